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


def validation_message(errors: list[dict]) -> tuple[str, list[dict]]:
    """pydantic's errors -> one line ("steps: Input should be ...; seed: ...") and a list without the inputs
    (which may be megabytes of base64)."""
    parts, detail = [], []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path")]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
        detail.append({"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")})
    return "invalid request: " + "; ".join(parts), detail


def install(app: FastAPI) -> None:
    """Register the JSON error handlers on `app`."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return error_response(err.status_code, str(err.detail), headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        message, detail = validation_message(list(err.errors()))
        return error_response(422, message, detail)

    @app.exception_handler(LdmkitError)
    async def ldmkit_error(request: Request, err: LdmkitError) -> JSONResponse:
        return error_response(422, str(err))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        # Starlette raises the exception again after this answer, so the server logs its traceback
        return error_response(500, f"internal error ({type(err).__name__}); the server's log has the details")
