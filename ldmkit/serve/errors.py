"""Every error reaches a client as JSON `{"error": "<one line>", "detail": ...}`, never as a traceback.

`ApiError` is what the server's own code raises for a bad request (its status says which: 413 too
large, 422 invalid, 503 busy ...). ldmkit's own errors (LdmkitError: a value the model cannot take)
become 422 with their message; pydantic's validation errors become 422 with one line naming each
bad field; anything unforeseen becomes 500 with its type only, and its traceback goes to the log.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ldmkit.errors import LdmkitError


class ApiError(HTTPException):
    """A request the server refuses, with its HTTP status and a message that says what to change.

    (An HTTPException, so that FastAPI passes it through untouched even while reading the body.)"""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(status, message, headers)


def error_response(status: int, message: str, detail=None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": message if detail is None else detail}, status, headers)


NOT_AN_OBJECT = ("model_attributes_type", "dict_type")  # pydantic's "Input should be a valid dictionary ..."


def validation_message(errors: list[dict], content_type: str | None = None) -> tuple[str, list[dict]]:
    """pydantic's errors -> one line ("steps: Input should be ...; seed: ...") and a list without the inputs
    (which may be megabytes of base64). `content_type`: the request's, named when a body was not read as JSON."""
    parts, detail = [], []
    for err in errors:
        parts.append(_one_line(err, content_type))
        detail.append({"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")})
    return "invalid request: " + "; ".join(parts), detail


def _one_line(err: dict, content_type: str | None) -> str:
    loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path")]
    kind = err.get("type")
    if kind == "json_invalid":  # loc: ("body", the character where decoding stopped)
        at = f" (at character {loc[0]})" if loc else ""
        return f"the body is not valid JSON{at}: {err.get('ctx', {}).get('error', err.get('msg', 'invalid'))}"
    if tuple(err.get("loc", ())) == ("body",) and kind in NOT_AN_OBJECT and not is_json(content_type):
        # (FastAPI reads a body as JSON only when it is labelled so; a form or text body stays bytes)
        sent = f"Content-Type: {content_type[:100]}" if content_type else "no Content-Type"
        return (f"the body is not labelled as JSON ({sent}); send it with the header 'Content-Type: "
                "application/json' (with curl -d, add -H 'Content-Type: application/json')")
    return f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}"


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def install(app: FastAPI) -> None:
    """Register the JSON error handlers on `app`."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return error_response(err.status_code, str(err.detail), headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        message, detail = validation_message(list(err.errors()), request.headers.get("content-type"))
        return error_response(422, message, detail)

    @app.exception_handler(LdmkitError)
    async def ldmkit_error(request: Request, err: LdmkitError) -> JSONResponse:
        return error_response(422, str(err))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        # Starlette raises the exception again after this answer, so the server logs its traceback
        return error_response(500, f"internal error ({type(err).__name__}); the server's log has the details")
