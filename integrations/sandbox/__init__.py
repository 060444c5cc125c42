"""The local Slack sandbox: a stand-in for Slack, used when no SLACK_BOT_TOKEN is set.

| module            | what                                                                 |
|-------------------|----------------------------------------------------------------------|
| webapi.py         | `FakeSlackWebApi`: the Web API as a Starlette app (tests serve it too) |
| store.py          | its in-memory state: messages, threads, views, calls, faults         |
| methods.py        | the Web API methods releasebot uses, over that state                 |
| params.py         | reading a call's parameters and token, and Slack's limits            |
| client.py         | `make_sandbox`, and `InProcessWebClient` that answers in process     |
| directory.py      | the people and groups, from `directory.yaml` beside it by default    |
| pages.py          | GET /sandbox and the forms it posts (`routes(slack_events, door)`)   |
| door.py           | who may come in: the guard on its routes, the start-up warning       |
| interactions.py   | Slack's interaction payloads, signed and delivered to /slack/events  |
| blockkit_html.py  | Block Kit and mrkdwn as safe HTML for the page                       |

Its data files (`directory.yaml`, `templates/sandbox.html`) live in this package and are
found relative to it.
"""
