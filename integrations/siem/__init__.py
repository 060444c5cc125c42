"""Security information and event management (SIEM) sinks: where the audit trail is sent."""
