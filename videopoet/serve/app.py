"""The HTTP API (`/v1`, OpenAPI schema at `/docs`) and the web page (`/`) of `videopoet serve`.

Errors are JSON `{"detail": MESSAGE, "field": NAME}`: 401 no or wrong key, 404 unknown job or file (also
another key's job), 409 cancelling a finished job, 422 a field out of its limits, 400 a broken upload,
429 a key's rate or quota (with `Retry-After`), 503 a full queue (with `Retry-After`)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi_offline import FastAPIOffline

from videopoet.errors import UserError
from videopoet.serve.limits import FieldError, check_params, parse_box
from videopoet.serve.store import FINAL
from videopoet.serve.uploads import check_upload, save_upload
from videopoet.serve.worker import QueueFull

if TYPE_CHECKING:
    from videopoet.serve.server import Service

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "videopoet_key"
DOCS_STATIC = "/docs-static"  # Swagger UI's and ReDoc's scripts and styles (the fastapi-offline package's)
UPLOADS = ("image", "video", "audio")
_MEDIA = {".mp4": "video/mp4", ".png": "image/png", ".wav": "audio/wav", ".json": "application/json"}


class ApiError(UserError):
    """An error answered as JSON with a status, a message, the field it concerns and extra headers."""

    def __init__(self, status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.field, self.headers = status, detail, field, headers or {}


def _error(status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field}, status_code=status, headers=headers)


def presented_key(request: Request) -> str | None:
    """The key a request carries: `Authorization: Bearer KEY`, `X-API-Key: KEY`, or the page's cookie."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key") or request.cookies.get(COOKIE)


def job_view(service: Service, job: dict[str, Any]) -> dict[str, Any]:
    """A job as the API shows it: state, progress, timings, parameters and links to its results."""
    base = f"/v1/generations/{job['id']}"
    live = service.worker.status(job["id"]) if job["state"] in ("queued", "running") else {}
    done = job["state"] == "done"
    end = job["finished"] or time.time()
    params = {k: v for k, v in job["params"].items() if k != "inputs"}
    return {
        "id": job["id"],
        "state": job["state"],
        "task": params.get("task"),
        "prompt": params.get("prompt"),
        "params": params,
        "inputs": sorted((job["params"].get("inputs") or {}).keys()),
        "progress": {"fraction": 1.0 if done else live.get("progress", 0.0), "step": live.get("step"), "steps": live.get("steps")},
        "queue_position": live.get("queue_position"),
        "timings": {"created": job["created"], "started": job["started"], "finished": job["finished"],
                    "queue_s": job["queue_s"], "run_s": job["run_s"], "total_s": end - job["created"]},
        "batch_size": job["batch_size"],
        "error": job["error"],
        "files": [{"name": f, "url": f"{base}/files/{f}", "sidecar": f"{base}/files/{Path(f).with_suffix('.json').name}",
                   "kind": {".mp4": "video", ".png": "image", ".wav": "audio"}.get(Path(f).suffix, "file")} for f in job["files"] or []],
        "links": {"self": base, "events": f"{base}/events"},
    }


class Changes:
    """Wakes the event streams on the event loop when the worker's `version` moves (the worker calls
    `notify` from its own thread), so a client hears that its job ended at once, not at its next poll."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: set[asyncio.Future] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def waiter(self) -> asyncio.Future:
        """A future the next change completes (take it before reading the state it guards)."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.add(future)
        return future

    def forget(self, future: asyncio.Future) -> None:
        self._waiters.discard(future)


def create_app(service: Service) -> FastAPI:
    """The FastAPI app over a `Service`; its lifespan starts and stops the worker."""

    changes = Changes()
    service.worker.add_listener(changes.notify)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        changes.bind(asyncio.get_running_loop())
        service.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, service.stop)

    # FastAPIOffline: FastAPI whose /docs (Swagger UI) and /redoc load their scripts from the app, not a CDN;
    # no validatorUrl: Swagger UI would otherwise send the schema's address to validator.swagger.io
    app = FastAPIOffline(title="videopoet serve", version="1", lifespan=lifespan, static_url=DOCS_STATIC,
                         swagger_ui_parameters={"validatorUrl": None},
                         description="Text (+ image / video / audio) to video with sound, from an exported videopoet model.")

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.detail, e.field, e.headers)

    @app.exception_handler(FieldError)
    async def _field_error(_request: Request, e: FieldError) -> JSONResponse:
        return _error(e.status, str(e), e.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        field = str(first.get("loc", ["", "?"])[-1])
        return _error(422, f"{field}: {first.get('msg', 'invalid')}", field)

    def owner_of(request: Request) -> str:
        if service.keys is None:
            return "local"
        key = presented_key(request)
        name = service.keys.name_of(key)
        if name is None:
            raise ApiError(401, "a valid API key is needed (Authorization: Bearer KEY)" if not key else "unknown API key", "key",
                           {"WWW-Authenticate": "Bearer"})
        return name

    def own_job(request: Request, job_id: str) -> dict[str, Any]:
        owner = owner_of(request)
        job = service.store.get(job_id)
        if job is None or job["owner"] != owner:
            raise ApiError(404, f"no generation {job_id}", "id")
        return job

    # ---- the page --------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise ApiError(404, f"no file {name}")
        return FileResponse(path)

    # ---- the API ---------------------------------------------------------------------------------------
    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        """Liveness and load: queued and running jobs."""
        return {"status": "ok", "model": service.model_name, "queued": service.worker.queued(),
                "running": len(service.worker.running()), "auth": service.keys is not None,
                "uptime_s": time.time() - service.started_at}

    @app.get("/v1/model")
    def model(request: Request) -> dict[str, Any]:
        """Tasks and their inputs, clip geometry, samplers and their defaults, vocabulary sizes, limits."""
        owner_of(request)
        limits = service.limits
        return {**service.info(), "limits": {k: getattr(limits, k) for k in limits.__dataclass_fields__}}

    @app.post("/v1/generations", status_code=202)
    def create(request: Request,
               task: Annotated[str, Form(description="a task of GET /v1/model")],
               prompt: Annotated[str, Form(description="the text prompt (text tasks)")] = "",
               sampler: Annotated[str, Form(description="ar or maskgit")] = "maskgit",
               steps: Annotated[int | None, Form(description="MaskGIT steps (default: the model's)")] = None,
               cfg: Annotated[float | None, Form(description="classifier-free guidance scale (1: off)")] = None,
               temperature: Annotated[float | None, Form(description="sampling temperature (0: greedy)")] = None,
               top_k: Annotated[int | None, Form(description="keep the k most likely ids (0: off)")] = None,
               top_p: Annotated[float | None, Form(description="nucleus sampling (1: off)")] = None,
               choice_temperature: Annotated[float | None, Form(description="MaskGIT: Gumbel noise on the confidences")] = None,
               seed: Annotated[int | None, Form(description="seed of the first sample")] = None,
               seconds: Annotated[float | None, Form(description="extend videos to this length")] = None,
               num_samples: Annotated[int, Form(description="samples to make")] = 1,
               box: Annotated[str | None, Form(description="video_inpainting: the box to fill; video_outpainting: the box "
                                                           "kept. TOP,LEFT,HEIGHT,WIDTH as shares of the frame (default: "
                                                           "the task's box in GET /v1/model)")] = None,
               image: Annotated[UploadFile | None, File(description="input image (image_to_video)")] = None,
               video: Annotated[UploadFile | None, File(description="input video (continuation, in/outpainting, video_to_audio)")] = None,
               audio: Annotated[UploadFile | None, File(description="input sound (audio_to_video)")] = None) -> JSONResponse:
        """Queue a generation; 202 with the job (its `links.self` to poll, `links.events` to follow)."""
        owner = owner_of(request)
        wait = service.rate.acquire(owner)
        if wait:
            raise ApiError(429, f"rate limit: {service.limits.rate_per_minute} requests per minute per key", "key", {"Retry-After": str(wait)})
        quota = ApiError(429, f"quota: at most {service.limits.max_active_per_key} queued or running jobs per key", "key", {"Retry-After": "5"})
        if service.store.count(owner) >= service.limits.max_active_per_key:  # early, before reading uploads; add() decides
            raise quota
        params: dict[str, Any] = {"task": task, "prompt": prompt, "sampler": sampler, "steps": steps, "cfg": cfg,
                                  "temperature": temperature, "top_k": top_k, "top_p": top_p, "choice_temperature": choice_temperature,
                                  "seed": seed, "seconds": seconds, "num_samples": num_samples, "box": parse_box(box)}
        check_params(params, service.limits)
        service.engine.check(params)
        if not service.worker.has_room():
            raise ApiError(503, f"the queue is full ({service.limits.max_queue} jobs); try again later", None, {"Retry-After": "10"})
        files = {"image": image, "video": video, "audio": audio}
        need = service.engine.needs(task)
        for name in UPLOADS:
            given = files[name] is not None and bool(files[name].filename)
            if name == need and not given:
                raise FieldError(name, f"{task} needs an uploaded {name}")
            if name != need and given:
                raise FieldError(name, f"{task} takes no {name}" + (f" (it takes {need})" if need else ""))
        job_id = service.store.new_id()
        folder = service.store.job_dir(job_id) / "inputs"
        if need is not None:
            try:
                path = save_upload(files[need].file, files[need].filename, need, folder, service.limits.max_upload_bytes)
                check_upload(path, need, service.info()["clip"])
            except FieldError:
                shutil.rmtree(folder.parent, ignore_errors=True)
                raise
            params["inputs"] = {need: str(path)}
        job = service.store.add(job_id, owner, params, max_active=service.limits.max_active_per_key)
        if job is None:  # another request of the key took the last place meanwhile
            shutil.rmtree(service.store.job_dir(job_id), ignore_errors=True)
            raise quota
        try:
            service.worker.submit(job_id)
        except QueueFull:
            service.store.delete(job_id)
            raise ApiError(503, f"the queue is full ({service.limits.max_queue} jobs); try again later", None, {"Retry-After": "10"}) from None
        return JSONResponse(job_view(service, service.store.get(job_id) or job), status_code=202,
                            headers={"Location": f"/v1/generations/{job_id}"})

    @app.get("/v1/generations")
    def listing(request: Request, limit: int = 50) -> dict[str, Any]:
        """The key's jobs, newest first (the page's gallery)."""
        owner = owner_of(request)
        return {"generations": [job_view(service, j) for j in service.store.list(owner, max(1, min(limit, 500)))]}

    @app.get("/v1/generations/{job_id}")
    def get(request: Request, job_id: str) -> dict[str, Any]:
        """State (queued, running, done, failed, cancelled), progress, timings and result links."""
        return job_view(service, own_job(request, job_id))

    @app.get("/v1/generations/{job_id}/events")
    async def events(request: Request, job_id: str) -> StreamingResponse:
        """The job as server-sent events: one `data:` line of JSON at every change, until it ends."""
        own_job(request, job_id)

        async def stream():
            last, seen, looked = None, None, 0.0
            while True:
                change = changes.waiter()
                version = service.worker.version
                if version != seen or time.monotonic() - looked >= 5.0:  # look again on a change, and every 5 s regardless
                    seen, looked = version, time.monotonic()
                    job = service.store.get(job_id)
                    if job is None:
                        return
                    view = job_view(service, job)
                    key = json.dumps(view | {"timings": None})
                    if key != last:
                        yield f"event: {job['state']}\ndata: {json.dumps(view)}\n\n"
                        last = key
                    if job["state"] in FINAL:
                        return
                if await request.is_disconnected():
                    return
                try:
                    await asyncio.wait_for(change, 1.0)  # the next change, or a second (a gone client is noticed)
                except TimeoutError:
                    changes.forget(change)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/v1/generations/{job_id}/files/{name}")
    def file(request: Request, job_id: str, name: str) -> FileResponse:
        """A result (MP4, PNG or WAV) or its JSON sidecar."""
        job = own_job(request, job_id)
        allowed = set(job["files"] or []) | {Path(f).with_suffix(".json").name for f in job["files"] or []}
        path = service.store.job_dir(job_id) / name
        if name not in allowed or not path.is_file():
            raise ApiError(404, f"generation {job_id} has no file {name}", "name")
        return FileResponse(path, media_type=_MEDIA.get(path.suffix, "application/octet-stream"))

    @app.delete("/v1/generations/{job_id}")
    def cancel(request: Request, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (a running batch's other jobs go on)."""
        job = own_job(request, job_id)
        if not service.worker.cancel(job_id):
            raise ApiError(409, f"generation {job_id} is {job['state']}; only queued or running jobs can be cancelled", "id")
        return job_view(service, service.store.get(job_id) or job)

    return app
