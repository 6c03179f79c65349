"""The command line of ``python demo.py`` and ``sam-studio``: flags -> Studio -> Blocks -> launch.

Every flag falls back to an environment variable (shown in ``--help``).
"""

from __future__ import annotations

import os

# torch's OpenMP threads spin while waiting; on a shared CPU box that turned a 50 ms click
# into 0.3-1 s. Passive waiting keeps clicks fast when another process is busy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib

with contextlib.suppress(ImportError):  # ZeroGPU on Hugging Face Spaces: before torch touches CUDA
    import spaces  # noqa: F401

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from sam_core.model.options import add_decoder_argument, add_weights_arguments, env
from sam_core.model.registry import DEFAULT_MODEL, MODEL_TYPES, MODELS

log = logging.getLogger("sam_studio")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; each falls back to an environment variable (shown in --help)."""
    p = argparse.ArgumentParser(
        description="SAM Studio: click points and boxes on an image and get Segment Anything's "
        "three scored candidate masks. Every flag can also be set by the environment variable shown.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--model",
        choices=MODEL_TYPES,
        default=env("SAM_MODEL", DEFAULT_MODEL),
        help="SAM variant: " + "; ".join(f"{m.name}: {m.summary}" for m in MODELS.values()) + " [env SAM_MODEL]",
    )
    add_weights_arguments(p)
    add_decoder_argument(p)
    p.add_argument(
        "--embeddings",
        default=env("SAM_EMBEDDINGS_DIR"),
        metavar="DIR",
        help="folder of precomputed embeddings (python -m sam_core.batch embed ...): an image stored there "
        "for the same model and weights is not encoded again [env SAM_EMBEDDINGS_DIR]",
    )
    p.add_argument(
        "--host",
        default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on; 0.0.0.0 exposes it to your network [env GRADIO_SERVER_NAME]",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(env("GRADIO_SERVER_PORT", "7860")),
        help="port to listen on [env GRADIO_SERVER_PORT]",
    )
    p.add_argument(
        "--share",
        action="store_true",
        default=env("GRADIO_SHARE", "").lower() in ("1", "true", "yes"),
        help="also open a temporary public *.gradio.live link (needs internet; falls back to local) [env GRADIO_SHARE]",
    )
    p.add_argument(
        "--auth",
        default=env("SAM_DEMO_AUTH"),
        help="USER:PASS required to open the app; strongly advised with --share [env SAM_DEMO_AUTH]",
    )
    p.add_argument(
        "--max-file-size",
        default=env("SAM_MAX_FILE_SIZE", "25mb"),
        help="largest upload accepted, e.g. 25mb or 1gb [env SAM_MAX_FILE_SIZE]",
    )
    p.add_argument(
        "--max-pixels",
        type=float,
        default=float(env("SAM_MAX_PIXELS", "50e6")),
        help="largest image accepted, in pixels (W x H) [env SAM_MAX_PIXELS]",
    )
    p.add_argument(
        "--alert-rules",
        default=env("SAM_ALERT_RULES"),
        metavar="FILE",
        help="alert rules (TOML) for the Monitor tab and /metrics; default: sam_core/monitor/alerts.toml "
        "[env SAM_ALERT_RULES]",
    )
    p.add_argument(
        "--outputs",
        default=env("SAM_OUTPUTS_DIR", "outputs"),
        help="folder for logs/ (run log) and overlays/ (saved overlays) [env SAM_OUTPUTS_DIR]",
    )
    p.add_argument(
        "--batch-max-images",
        type=int,
        default=int(env("SAM_BATCH_MAX_IMAGES", "100")),
        help="most images one study in the Batch tab may hold [env SAM_BATCH_MAX_IMAGES]",
    )
    p.add_argument(
        "--batch-max-pixels",
        type=float,
        default=float(env("SAM_BATCH_MAX_PIXELS", "400e6")),
        help="most pixels (all images together) one study in the Batch tab may hold [env SAM_BATCH_MAX_PIXELS]",
    )
    p.add_argument(
        "--queue-size",
        type=int,
        default=int(env("SAM_QUEUE_SIZE", "64")),
        help="requests allowed to wait; beyond it visitors are told the server is busy [env SAM_QUEUE_SIZE]",
    )
    p.add_argument(
        "--decode-clicks",
        choices=("auto", "browser", "server"),
        default=env("SAM_DECODE_CLICKS", "auto"),
        help="where a visitor's clicks are decoded by default: auto = in the browser (onnxruntime-web, "
        "clicks and hover never wait on the server) when WebAssembly works, else on the server; each "
        "visitor can change it in Settings [env SAM_DECODE_CLICKS]",
    )
    p.add_argument(
        "--cross-origin-isolation",
        choices=("on", "off"),
        default=env("SAM_CROSS_ORIGIN_ISOLATION", "on"),
        help="send COOP/COEP headers (Cross-Origin-Opener-Policy same-origin, Cross-Origin-Embedder-Policy "
        "credentialless) so the browser decoder can use threads; off if the app must be embedded in an iframe "
        "or load cross-origin resources [env SAM_CROSS_ORIGIN_ISOLATION]",
    )
    return p.parse_args(argv)


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``USER:PASS`` -> (user, pass); raises ValueError on a malformed value."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth / SAM_DEMO_AUTH must look like USER:PASS")
    return user, password


def build(args: argparse.Namespace) -> tuple[Any, Any]:
    """Load the model and build the Blocks app (no server yet). Returns (app, studio)."""
    from sam_core.monitor.alerts import load_rules

    rules = load_rules(getattr(args, "alert_rules", None))  # a bad rules file fails before the model loads
    emb_dir = getattr(args, "embeddings", None)
    if emb_dir and not Path(emb_dir).expanduser().is_dir():
        from sam_core.core.errors import UserError

        raise UserError(f"--embeddings {emb_dir}: no such folder (make one with: python -m sam_core.batch embed ...).")
    from sam_core.app.studio import Studio
    from sam_core.batch.uploads import BatchLimits
    from sam_core.model.segmenter import Segmenter
    from sam_core.ui.app import build_app

    def load(model_type: str, checkpoint: str | None = None) -> Segmenter:
        return Segmenter.from_pretrained(
            model_type,
            checkpoint,
            args.device,
            args.precision,
            checkpoints_dir=args.checkpoints_dir,
            repo_id=args.hub_repo,
            sdpa=args.attention == "sdpa",
            embeddings=getattr(args, "embeddings", None),
            decoder=getattr(args, "decoder", "auto"),
        )

    segmenter = load(args.model, args.checkpoint)
    segmenter.prepare_decoder()  # export / load the ONNX decoder now, not on the first click
    studio = Studio(
        segmenter,
        outputs_dir=args.outputs,
        max_pixels=int(args.max_pixels),
        model_loader=lambda model_type, _progress: load(model_type),
    )
    limits = BatchLimits(max_images=args.batch_max_images, max_pixels=int(args.batch_max_pixels))
    app = build_app(
        studio, batch_limits=limits, alert_rules=rules, decode_clicks=getattr(args, "decode_clicks", "auto")
    )
    return app, studio


def launch_kwargs(args: argparse.Namespace, routes: list[Any] | None = None) -> dict[str, Any]:
    """The keyword arguments of ``Blocks.launch`` for these flags (``routes``: extra Starlette routes)."""
    from sam_core.ui.app import CSS
    from sam_core.ui.web_assets import isolation_middleware

    isolate = getattr(args, "cross_origin_isolation", "on") == "on"
    return dict(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        auth=parse_auth(args.auth),
        max_file_size=args.max_file_size,
        show_error=True,
        css=CSS,
        app_kwargs={"routes": list(routes or []), "middleware": [isolation_middleware()] if isolate else []},
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["batch"]:  # `sam-studio batch ...` is `python -m sam_core.batch ...`
        from sam_core.batch.cli import main as batch_main

        return batch_main(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from sam_core.core.errors import UserError

    try:
        auth = parse_auth(args.auth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            app, studio = build(args)
        from sam_core.ui.metrics_route import attach_metrics, metrics_route

        exporter = attach_metrics(studio, args.alert_rules)
    except (UserError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.share and auth is None:
        log.warning("!" * 72)
        log.warning(
            "--share without --auth: ANYONE with the link can use this app, upload images and "
            "use your GPU. Add --auth USER:PASS (or set SAM_DEMO_AUTH)."
        )
        log.warning("!" * 72)
    app.queue(max_size=args.queue_size, default_concurrency_limit=4)
    from sam_core.ui.web_assets import register_static

    register_static()  # the vendored onnxruntime-web at gradio_api/file=..., with .wasm/.mjs MIME types
    app.launch(**launch_kwargs(args, routes=[metrics_route(exporter)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
