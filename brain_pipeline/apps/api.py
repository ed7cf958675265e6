"""`brain-pipeline serve`: the HTTP face of the champion model (FastAPI on uvicorn).

Thin on purpose: decoding, the guard, batching and reloading live in core/serving; this
module maps them to routes, status codes and JSON. Every refusal is a 4xx JSON body
``{"error": code, "detail": what is wrong, "filename": ...}``; the service keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from brain_pipeline.core.artifacts import figure_png
from brain_pipeline.core.data.subjects import compile_group_pattern
from brain_pipeline.core.explain.method_names import DEFAULT_METHOD, METHODS
from brain_pipeline.core.serving.batching import MicroBatcher
from brain_pipeline.core.serving.decoding import (
    InputError,
    UploadLimits,
    check_content_type,
    decode_image,
)
from brain_pipeline.core.serving.predictor import Predictor
from brain_pipeline.core.serving.source import ModelSource, model_summary
from brain_pipeline.core.serving.subjects import per_subject

log = logging.getLogger("brain_pipeline.serve")


@dataclass(frozen=True)
class ServeSettings:
    limits: UploadLimits = field(default_factory=UploadLimits)
    max_batch: int = 32
    batch_wait_ms: float = 5.0
    reload_seconds: float = 5.0  # how often the promotion history is re-read; 0: never

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"--max-batch must be at least 1, got {self.max_batch}")
        for name in ("batch_wait_ms", "reload_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must not be negative")


class ServingState:
    """The model that answers now, its batcher, and the swap to a newly promoted one."""

    def __init__(self, source: ModelSource, settings: ServeSettings) -> None:
        self.source, self.settings = source, settings
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.predictor: Predictor | None = None
        self.batcher: MicroBatcher | None = None
        self.reloads = 0
        self._reload_lock = asyncio.Lock()
        # What the last look at the model's files found: "intact" or "unverified", and the
        # problem (a damaged or missing champion) while the loaded model still answers.
        self.files, self.problem = "unverified", None

    def _batcher_for(self, predictor: Predictor) -> MicroBatcher:
        batcher = MicroBatcher(
            predictor.run,
            self.executor,
            max_batch=self.settings.max_batch,
            max_wait_s=self.settings.batch_wait_ms / 1000.0,
        )
        batcher.start()
        return batcher

    async def start(self) -> None:
        choice = await asyncio.to_thread(self.source.choose)
        self.predictor = await asyncio.to_thread(self.source.load, choice)
        self.files = choice.files
        self.batcher = self._batcher_for(self.predictor)
        log.info("serving %s", self.predictor.version)

    async def reload(self, force: bool = False) -> bool:
        """Load the champion (or the --model file) again if it changed, or when forced;
        requests already queued are answered by the model they were prepared for."""
        async with self._reload_lock:
            choice = await asyncio.to_thread(self.source.choose)
            self.files, self.problem = choice.files, None
            current = self.predictor
            if (
                not force
                and current
                and (choice.version, choice.path)
                == (
                    current.version,
                    current.model_path,
                )
            ):
                return False
            predictor = await asyncio.to_thread(self.source.load, choice)
            old = self.batcher
            self.predictor, self.batcher = predictor, self._batcher_for(predictor)
            self.reloads += 1
            log.info("now serving %s (was %s)", predictor.version, current and current.version)
            if old is not None:
                await old.close()
            return True

    async def watch(self) -> None:
        while self.settings.reload_seconds > 0:
            await asyncio.sleep(self.settings.reload_seconds)
            try:
                await self.reload()
            except Exception as exc:  # a broken promotion must not stop the model that serves
                self.problem = f"{exc} (still serving {self.predictor.version}, loaded before)"
                log.exception("reload failed; still serving %s", self.predictor.version)

    async def classify(self, images: list) -> tuple[Predictor, list[dict]]:
        """Prepare with the current model and queue on its batcher; prepared again if a
        swap happened meanwhile (a new model may want another input size)."""
        while True:
            predictor, batcher = self.predictor, self.batcher
            prepared = await run_in_threadpool(lambda p=predictor: [p.prepare(i) for i in images])
            if self.predictor is predictor:  # no await between this check and the queueing
                return predictor, await batcher.submit(prepared)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        self.executor.shutdown(wait=True)


def create_app(source: ModelSource, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    state = ServingState(source, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.start()
        watcher = asyncio.create_task(state.watch())
        _reload_on_sighup(state)
        yield
        watcher.cancel()
        await state.close()

    app = FastAPI(
        title="brain_pipeline",
        summary="Classifies brain MRI slices (healthy, tumour, Alzheimer) with the champion "
        "model; refuses images unlike its training slices. Research and teaching only.",
        lifespan=lifespan,
    )
    app.state.serving = state
    _add_error_handlers(app, settings.limits)
    _add_routes(app, state, settings.limits)
    return app


def _reload_on_sighup(state: ServingState) -> None:
    loop = asyncio.get_running_loop()
    # Only the main thread may install handlers (not so under a test client): then no signal.
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(state.reload(force=True)))


def _add_error_handlers(app: FastAPI, limits: UploadLimits) -> None:
    @app.exception_handler(InputError)
    async def refused(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse(exc.as_dict(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse(
            {"error": "invalid_request", "detail": detail, "filename": None}, status_code=422
        )

    @app.middleware("http")
    async def body_limit(request: Request, call_next):
        declared = request.headers.get("content-length")
        ceiling = limits.max_bytes * limits.max_images + 1024 * 1024
        if declared and declared.isdigit() and int(declared) > ceiling:
            return JSONResponse(
                {
                    "error": "request_too_large",
                    "detail": f"{int(declared):,} bytes is more than this service accepts in one "
                    f"request ({ceiling:,})",
                    "filename": None,
                },
                status_code=413,
            )
        return await call_next(request)


async def _decoded(upload: UploadFile, limits: UploadLimits):
    """The upload's image, or InputError (with the file name) saying what is wrong."""
    try:
        check_content_type(upload.content_type, upload.filename)
        data = await upload.read(limits.max_bytes + 1)
        return await run_in_threadpool(decode_image, data, limits, upload.filename)
    except InputError as exc:
        exc.filename = upload.filename
        raise


def _checked_group_pattern(text: str | None):
    """The `group_pattern` form field compiled (None: the built-in layouts'); a 422 names
    what is wrong with a bad one."""
    if text is None:
        return None
    try:
        return compile_group_pattern(text)
    except ValueError as exc:
        raise InputError(422, "bad_group_pattern", str(exc)) from exc


def _add_routes(app: FastAPI, state: ServingState, limits: UploadLimits) -> None:
    @app.post("/predict", summary="Classify one or more images (multipart field `files`)")
    async def predict(
        files: Annotated[list[UploadFile], File()],
        group_pattern: Annotated[str | None, Form()] = None,
        by_subject: Annotated[bool, Form()] = False,
    ) -> dict:
        if len(files) > limits.max_images:
            raise InputError(
                413, "too_many_images", f"{len(files)} images; at most {limits.max_images}"
            )
        pattern = _checked_group_pattern(group_pattern)
        images = [await _decoded(upload, limits) for upload in files]
        predictor, answers = await state.classify(images)
        response = {
            "model_version": predictor.version,
            "results": [
                {"filename": upload.filename, **answer}
                for upload, answer in zip(files, answers, strict=True)
            ],
        }
        if by_subject or pattern is not None:
            names = [upload.filename or "" for upload in files]
            response["subjects"] = per_subject(names, answers, pattern)
        return response

    @app.post("/explain", summary="Explanation overlay (PNG) or map (JSON) for one image")
    async def explain(
        file: Annotated[UploadFile, File()],
        mask: Annotated[UploadFile | None, File(description="its lesion mask, outlined")] = None,
        method: Literal[METHODS] = DEFAULT_METHOD,  # type: ignore[valid-type]
        output: Annotated[Literal["png", "json"], Query(alias="format")] = "png",
    ):
        image = await _decoded(file, limits)
        lesion = None if mask is None else await _lesion_mask(mask, limits, image.size)
        predictor = state.predictor
        item = await run_in_threadpool(predictor.prepare, image)
        loop = asyncio.get_running_loop()
        answer, heatmap = await loop.run_in_executor(
            state.executor, predictor.explain, item, method
        )
        if answer["in_distribution"] is False:
            return JSONResponse(
                {"error": "out_of_distribution", "detail": answer["note"], **answer},
                status_code=422,
            )
        if output == "json":
            map_ = heatmap.round(4).tolist()
            return {"filename": file.filename, **answer, "method": method, "map": map_}
        png = await run_in_threadpool(
            _overlay_png, image, heatmap, answer, file.filename, lesion, method
        )
        headers = {"X-Model-Version": predictor.version}
        return Response(
            png,
            media_type="image/png",
            headers=headers | {"X-Predicted-Class": answer["predicted_class"]},
        )

    @app.get("/health", summary="Liveness, the model that answers, batching counters")
    async def health() -> dict:
        stats = state.batcher.stats
        return {
            "status": "degraded" if state.problem else "ok",
            "problem": state.problem,
            "model_files": state.files,
            "model_version": state.predictor.version,
            "guard": state.predictor.guard is not None,
            "reloads": state.reloads,
            "batches": stats.batches,
            "images": stats.images,
            "largest_batch": stats.largest_batch,
        }

    @app.get("/model", summary="Version, model card summary, guard, lineage root")
    async def model() -> dict:
        return await run_in_threadpool(model_summary, state.predictor, state.source.artifacts_dir)


def _overlay_png(image, heatmap, answer: dict, name: str | None, lesion, method: str) -> bytes:
    """The map on the uploaded image at its own resolution, the lesion mask outlined."""
    from brain_pipeline.core.explain.overlays import original_view, render_original_overlays

    probability = answer["probabilities"][answer["predicted_class"]]
    title = f"{answer['predicted_class']} ({probability:.2f})"
    view = original_view(image, heatmap, lesion)
    figure = render_original_overlays([view], [title], suptitle=name or "", method=method)
    return figure_png(figure)


async def _lesion_mask(upload: UploadFile, limits: UploadLimits, size: tuple[int, int]):
    """The `mask` part as a boolean lesion mask of an image of `size` (width, height), or
    InputError naming the part's file."""
    from brain_pipeline.core.data.lesions import read_lesion_mask

    data = await upload.read(limits.max_bytes + 1)
    try:
        if len(data) > limits.max_bytes:
            raise ValueError(f"larger than {limits.max_bytes} bytes")
        lesion = await run_in_threadpool(read_lesion_mask, io.BytesIO(data))
    except (OSError, ValueError) as exc:
        error = InputError(422, "unreadable_mask", f"cannot read as a lesion mask: {exc}")
        error.filename = upload.filename
        raise error from exc
    if (lesion.shape[1], lesion.shape[0]) != tuple(size):
        error = InputError(
            422,
            "mask_size_mismatch",
            f"the lesion mask is {lesion.shape[1]}x{lesion.shape[0]} but the image is "
            f"{size[0]}x{size[1]}: not this image's mask",
        )
        error.filename = upload.filename
        raise error
    return lesion


def serve(source: ModelSource, host: str, port: int, settings: ServeSettings) -> None:
    import uvicorn

    # The service's own lines (which model serves, reloads) beside uvicorn's access log.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    uvicorn.run(create_app(source, settings), host=host, port=port, log_level="info")
