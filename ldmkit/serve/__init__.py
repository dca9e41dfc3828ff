"""`ldmkit serve`: one process that loads models once and answers HTTP: an A1111-compatible API,
native endpoints for every ldmkit task, a shared job queue, and a web page. Needs the `serve` extra
(`pip install -e ".[serve]"`: fastapi, uvicorn, pydantic). docs/serve.md is the user's guide.

    app.py            the FastAPI app: routes, JSON errors, middleware, worker start and stop
    security.py       the bind rule, the bearer token, Host / Origin checks, the body limit
    errors.py         every error as JSON {"error": ...}, never a traceback
    registry.py       the served models: names, tasks, what each accepts
    schemas.py        the native request bodies and the server's limits
    images.py         base64 <-> PIL within the limits; PNGs with their metadata
    jobs.py           a job: status, progress, previews, cancel through the step callback
    queue.py          the bounded queue shared by all clients, one worker thread per device
    state.py          what the routes share, and the glue from a request to its job
    tasks.py          checked requests -> Pipeline / upscale / inpaint calls
    a1111.py          A1111's request fields, sampler names and answers
    routes_a1111.py   /sdapi/v1/...      routes_native.py   /ldmkit/v1/...      routes_page.py   / and /static
    static/           the page: plain HTML, JS and CSS
"""
