"""The studio's Gradio page: canvas settings, entities, path canvas, previews, prompt, generation.

Server-side functions only glue widgets to the library: uploads are checked here (size, type,
decodable), every scene goes through ``tora2.scenes`` (track.json, validation with the reader of
``tora2 track validate``) and every generation through ``tora2.requests`` and
``entities.generation`` — the same request, checks and backend as ``tora2 generate``.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tora2.errors import InputError
from tora2.scenes import EASINGS, INTERPOLATIONS
from tora2.specs import KINDS

HERE = Path(__file__).resolve().parent
MAX_UPLOAD_BYTES = 20 << 20
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
LOAD_SUFFIXES = (".json", ".txt", ".npy", ".jsonl", ".yaml", ".yml")
TEMPLATE = ('<div class="studio"><div class="studio-entities"></div><canvas class="studio-paths"></canvas>'
            '<p class="studio-help">click: add a point · drag: move it · shift-click: delete · '
            'double-click: pause there · buttons: which entity you draw</p></div>')


# ---------------------------------------------------------------------------------------------- session


def session_folder(folder: str | None, root: Path) -> str:
    """This browser session's temporary folder (made on first use; removed when the session ends)."""
    if folder is None or not Path(folder).is_dir():
        folder = tempfile.mkdtemp(prefix="session-", dir=root)
    return folder


def remove_folder(folder: str | None) -> None:
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def check_upload(path: str | None, suffixes: tuple[str, ...], what: str) -> Path:
    """An uploaded file: present, not too big, of an accepted type; one-line errors."""
    if not path:
        raise InputError(f"no {what} uploaded")
    file = Path(path)
    name = file.name
    if file.suffix.lower() not in suffixes:
        raise InputError(f"{name}: a {what} must be one of {', '.join(suffixes)}")
    size = file.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise InputError(f"{name} is {size / (1 << 20):.1f} MB; the studio takes files up to {MAX_UPLOAD_BYTES >> 20} MB")
    return file


def keep_upload(path: str | None, folder: str, suffixes: tuple[str, ...], what: str) -> str:
    """Check an upload and copy it into the session folder (Gradio's own copy is not ours to keep)."""
    file = check_upload(path, suffixes, what)
    if suffixes == IMAGE_SUFFIXES:
        from entities.images import load_image

        try:
            load_image(file)
        except InputError:
            raise InputError(f"{file.name} is not an image this studio can read; upload a PNG, JPEG or WebP file") from None
    target = Path(folder) / f"{len(list(Path(folder).iterdir())):03d}-{file.name}"
    shutil.copyfile(file, target)
    return str(target)


def prepare_photo(path: str, folder: str, phrase: str | None, kind: str | None, box: str | None):
    """An uploaded photo → (PreparedEntity, its entity folder in the session). Generation reads that
    folder back, so the video is conditioned on exactly the crop the page shows."""
    from entities.prepare import prepare_entity
    from entities.segment import parse_numbers

    kept = keep_upload(path, folder, IMAGE_SUFFIXES, "photo")
    text = (phrase or "").strip() or Path(path).stem.replace("_", " ")
    box_numbers = parse_numbers(box, 4, "box") if (box or "").strip() else None
    prepared = prepare_entity(kept, text, kind=kind or "auto", box=box_numbers)
    entity_dir = prepared.save(Path(kept).with_suffix(".entity"))
    return prepared, str(entity_dir)


# ---------------------------------------------------------------------------------------------- scene


def entity_color(index: int) -> str:
    from tora2.trajectory.preview import entity_color as rgb

    r, g, b = rgb(index)
    return f"#{r:02x}{g:02x}{b:02x}"


def canvas_value(previous: str | None, count: int, width: int, height: int, background: str | None,
                 labels: list[str], replace_points: bool = False) -> str:
    """The canvas JSON for ``count`` entities at ``width × height``. The canvas keeps (and rescales) the
    points drawn in the page unless ``replace_points`` (a loaded scene)."""
    try:
        old = json.loads(previous) if previous else {}
    except ValueError:
        old = {}
    old_entities = old.get("entities", [])
    entities = []
    for i in range(count):
        points = old_entities[i]["points"] if i < len(old_entities) else []
        entities.append({"id": f"entity{i + 1}", "label": labels[i] or f"entity {i + 1}", "color": entity_color(i),
                         "points": points})
    value = {"width": width, "height": height, "background": background, "active": old.get("active", 0),
             "entities": entities}
    if replace_points:
        value["replace_points"] = True
    return json.dumps(value)


def background_url(path: str | None, width: int, height: int) -> str | None:
    """A small data URL of the background image for the canvas (resized to the output size)."""
    if not path:
        return None
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB").resize((width, height))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def scene_entities(canvas: str, slots: list[tuple]) -> list:
    """The entities in use: a slot with a photo, a phrase or a drawn point (in slot order)."""
    from tora2.scenes import SceneEntity

    drawn = {e["id"]: e["points"] for e in json.loads(canvas or "{}").get("entities", [])}
    out = []
    for i, (image, text, kind, start, end, easing, interpolation) in enumerate(slots):
        entity_id = f"entity{i + 1}"
        points = drawn.get(entity_id, [])
        if not (image or (text or "").strip() or points):
            continue
        out.append(SceneEntity(id=entity_id, text=(text or "").strip(), image=image or None, kind=kind or "auto",
                               points=points, start=int(start or 0), end=None if end in (None, "") else int(end),
                               easing=easing or "none", interpolation=interpolation or "linear"))
    return out


def settings(frames, height, width, fps) -> dict:
    from tora2.requests import check_flags

    if any(v in (None, "") for v in (frames, height, width, fps)):
        raise InputError("frames, height, width and fps must all be set (the model's defaults fill them at start)")
    check_flags(prompt="-", frames=frames, height=height, width=width, steps=None, guidance=None, seed=None, fps=fps)
    return dict(num_frames=int(frames), height=int(height), width=int(width), fps=float(fps))


def validate_scene(canvas: str, sizes: dict, slots: list[tuple]):
    """(track.json object, tracks, entities) or a one-line InputError: the checks of ``tora2 track validate``."""
    from tora2.scenes import scene_track_json, scene_tracks

    entities = scene_entities(canvas, slots)
    if not entities:
        raise InputError("add an entity: upload its photo, type its phrase and click its path on the canvas")
    data = scene_track_json(entities, width=sizes["width"], height=sizes["height"], num_frames=sizes["num_frames"],
                            fps=sizes["fps"])
    tracks = scene_tracks(data, **sizes)
    return data, tracks, entities


def preview_gifs(tracks, sizes: dict, background: str | None, folder: str) -> tuple[str, str]:
    """An animated overlay of every path over the background, and the flow the model receives (GIFs)."""
    from tora2.pipelines.video_io import draw_paths, write_video
    from tora2.trajectory import flow_to_rgb, render_flow
    from tora2.trajectory.preview import entity_color as rgb

    frames, height, width = sizes["num_frames"], sizes["height"], sizes["width"]
    base = np.full((frames, height, width, 3), 238, np.uint8)
    if background:
        from PIL import Image

        with Image.open(background) as image:
            base[:] = np.asarray(image.convert("RGB").resize((width, height)))
    drawn = draw_paths(base, [t.points for t in tracks], [t.visible for t in tracks], [rgb(i) for i in range(len(tracks))])
    flow = render_flow([t.points for t in tracks], height, width, visible=[t.visible for t in tracks])
    flow_rgb = ((flow_to_rgb(flow) + 1) * 127.5).clip(0, 255).astype(np.uint8)
    paths = Path(folder) / "preview-paths.gif", Path(folder) / "preview-flow.gif"
    write_video(_upscale(drawn), paths[0], sizes["fps"])
    write_video(_upscale(flow_rgb), paths[1], sizes["fps"])
    return str(paths[0]), str(paths[1])


def _upscale(frames: np.ndarray, side: int = 256) -> np.ndarray:
    """Nearest-neighbour enlargement so that a 64-pixel preview is visible in the page."""
    factor = max(1, side // max(frames.shape[1:3]))
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


# ---------------------------------------------------------------------------------------------- generation


def generate_job(backend, folder: str, canvas: str, sizes: dict, prompt: str, steps, seed, guidance, slots,
                 on_step=None) -> dict:
    """One generation with the request path of ``tora2 generate``; returns the files written."""
    from entities.generation import check_job, write_outputs
    from tora2.io import write_json_atomic, write_text_atomic
    from tora2.requests import Job, check_flags, resolve_entity
    from tora2.scenes import manifest_line

    steps = None if steps in (None, "") else int(steps)
    seed = 0 if seed in (None, "") else int(seed)
    guidance = None if guidance in (None, "") else float(guidance)
    check_flags(prompt=prompt or "", frames=sizes["num_frames"], height=sizes["height"], width=sizes["width"],
                steps=steps, guidance=guidance, seed=seed, fps=sizes["fps"])
    data, _, entities = validate_scene(canvas, sizes, slots)
    run = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
    track_file = run / "track.json"
    write_json_atomic(data, track_file)
    rows = []
    for e in entities:
        row = {"path": f"{track_file}#{e.id}", "kind": e.kind, "image": e.image}
        if e.text:
            row["text"] = e.text
        rows.append(row)
    requests = [resolve_entity(row, run, f"entity {i + 1}", **sizes) for i, row in enumerate(rows)]
    output = run / "tora2.mp4"
    job = Job(id="studio", name="studio", index=0, prompt=prompt.strip(), entities=requests, seed=seed,
              height=sizes["height"], width=sizes["width"], num_frames=sizes["num_frames"], num_inference_steps=steps,
              guidance_scale=guidance, fps=sizes["fps"], output=str(output))
    check_job(job, backend.info)
    backend.load()
    specs = backend.prepare(job)
    result = backend.generate([job], [specs])[0]
    written = write_outputs(job, result, output, backend.model_id, overlay=True, extra=backend.sidecar_extra())
    manifest = run / "job.jsonl"
    write_text_atomic(manifest, manifest_line(prompt.strip(), entities, "track.json", steps=steps, guidance=guidance,
                                              seed=seed, **sizes) + "\n")
    from tora2.pipelines.video_io import sidecar_path

    return {"video": str(written[0]), "overlay": str(written[1]), "track": str(track_file),
            "sidecar": str(sidecar_path(output)), "manifest": str(manifest)}


# ---------------------------------------------------------------------------------------------- page


def build(model: str | None = None, root: str | Path | None = None):
    """The studio as a ``gr.Blocks`` (not launched) and its temporary root."""
    import gradio as gr

    from entities.generation import GenerationBackend
    from tora2.scenes import prompt_phrases, scene_from_file

    backend = GenerationBackend(model, progress=True)
    info = backend.info
    root = Path(root or tempfile.mkdtemp(prefix="tora2-studio-"))
    root.mkdir(parents=True, exist_ok=True)
    count = max(1, min(info.max_entities, 4))
    js = (HERE / "canvas.js").read_text(encoding="utf-8")
    css = (HERE / "studio.css").read_text(encoding="utf-8")

    def fail(error: Exception):
        return gr.Error(" ".join(str(error).split()) or type(error).__name__)

    with gr.Blocks(title="tora2 studio") as demo:
        session = gr.State(None, delete_callback=remove_folder)
        gr.Markdown(f"## tora2 studio\nModel: `{backend.model_id}` · up to {info.max_entities} entities · "
                    "place entities, draw their paths, generate.")
        with gr.Row():
            frames = gr.Number(info.frames, label="frames", precision=0, elem_id="frames")
            height = gr.Number(info.height, label="height (px)", precision=0, elem_id="height")
            width = gr.Number(info.width, label="width (px)", precision=0, elem_id="width")
            fps = gr.Number(8.0, label="fps", elem_id="fps")
            background = gr.File(label="background image (optional)", file_types=list(IMAGE_SUFFIXES), elem_id="background")
        with gr.Row():
            with gr.Column(scale=3):
                canvas = gr.HTML(canvas_value(None, count, info.width, info.height, None, [""] * count),
                                 html_template=TEMPLATE, js_on_load=js, css_template=css, elem_id="canvas")
                status = gr.Markdown("", elem_id="path-status")
                load = gr.File(label="load a track.json, Tora .txt or manifest line", file_types=list(LOAD_SUFFIXES),
                               elem_id="load")
            with gr.Column(scale=2):
                slots, photos, texts, crops = [], [], [], []
                with gr.Tabs():
                    for i in range(count):
                        with gr.Tab(f"entity {i + 1}"):
                            photo = gr.File(label="photo", file_types=list(IMAGE_SUFFIXES), elem_id=f"photo-{i + 1}")
                            stored = gr.State(None)
                            text = gr.Textbox(label="phrase (as in the prompt)", elem_id=f"text-{i + 1}")
                            kind = gr.Dropdown(list(KINDS), value="auto", label="kind")
                            box = gr.Textbox(label="box around the entity in the photo (optional): x0,y0,x1,y1",
                                             elem_id=f"box-{i + 1}")
                            with gr.Row():
                                crop = gr.Image(label="crop", interactive=False, height=128)
                                mask = gr.Image(label="mask", interactive=False, height=128)
                            label = gr.Markdown("", elem_id=f"kind-{i + 1}")
                            with gr.Row():
                                start = gr.Number(0, label="appears at frame", precision=0)
                                end = gr.Number(info.frames - 1, label="disappears after frame", precision=0)
                            with gr.Row():
                                easing = gr.Dropdown(list(EASINGS), value="none", label="easing")
                                interpolation = gr.Dropdown(list(INTERPOLATIONS), value="linear", label="interpolation")
                            slots.append((stored, text, kind, start, end, easing, interpolation))
                            photos.append((photo, stored, text, kind, box))
                            texts.append(text)
                            crops.append((crop, mask, label))
        with gr.Row():
            preview_button = gr.Button("preview paths and flow", elem_id="preview")
        with gr.Row():
            preview_paths = gr.Image(label="paths over the background", interactive=False, elem_id="preview-paths")
            preview_flow = gr.Image(label="flow the model receives", interactive=False, elem_id="preview-flow")
        prompt = gr.Textbox(label="prompt", elem_id="prompt")
        phrases = gr.HighlightedText(label="entity phrases in the prompt", combine_adjacent=True, elem_id="phrases")
        with gr.Row():
            steps = gr.Number(50, label="steps", precision=0, elem_id="steps")
            seed = gr.Number(0, label="seed", precision=0, elem_id="seed")
            guidance = gr.Number(6.0, label="guidance", elem_id="guidance")
        with gr.Row():
            run = gr.Button("generate", variant="primary", elem_id="generate")
            cancel = gr.Button("cancel", elem_id="cancel")
        result = gr.Markdown("", elem_id="result")
        with gr.Row():
            video = gr.Video(label="video", elem_id="video")
            overlay = gr.Video(label="with paths", elem_id="overlay")
        files = gr.File(label="downloads: mp4, track.json, sidecar, manifest line", file_count="multiple",
                        elem_id="downloads")

        flat_slots = [c for slot in slots for c in slot]
        sizes_in = [frames, height, width, fps]

        def grouped(values):
            return [tuple(values[k : k + 7]) for k in range(0, len(values), 7)]

        # -- entities: upload → check, keep, segment; show crop, mask, kind and method at once
        def on_photo(path, phrase, kind_value, box_value, folder):
            if not path:
                return None, None, None, "", folder
            folder = session_folder(folder, root)
            try:
                prepared, entity_dir = prepare_photo(path, folder, phrase, kind_value, box_value)
            except InputError as error:
                raise fail(error) from None
            rgba = np.asarray(prepared.crop)
            note = f"**kind:** {prepared.kind} · **segmentation:** {prepared.meta.get('segmenter', '?')}"
            if prepared.meta.get("warnings"):
                note += " · " + "; ".join(prepared.meta["warnings"])
            return entity_dir, rgba[..., :3], (prepared.mask * 255).astype(np.uint8), note, folder

        for (photo, stored, text, kind_box, box), (crop, mask, label) in zip(photos, crops):
            for trigger in (photo, kind_box, box):
                trigger.change(on_photo, [photo, text, kind_box, box, session], [stored, crop, mask, label, session])

        # -- canvas: entity list, size and background follow the settings and phrases
        def refresh_canvas(value, frames_value, height_value, width_value, bg, folder, *phrase_values):
            try:
                sizes = settings(frames_value, height_value, width_value, 8.0)
            except InputError as error:
                return value, f"⚠ {error}", folder
            folder = session_folder(folder, root)
            url = None
            if bg:
                try:
                    url = background_url(keep_upload(bg, folder, IMAGE_SUFFIXES, "background"), sizes["width"], sizes["height"])
                except InputError as error:
                    raise fail(error) from None
            # the status line is the validation's (canvas.change re-runs it); a refresh leaves it alone
            return canvas_value(value, count, sizes["width"], sizes["height"], url, list(phrase_values)), gr.skip(), folder

        for trigger in (height, width, background, *texts):
            trigger.change(refresh_canvas, [canvas, frames, height, width, background, session, *texts],
                           [canvas, status, session])

        # -- validation beside the canvas, on every edit
        def check(value, frames_value, height_value, width_value, fps_value, *slot_values):
            try:
                sizes = settings(frames_value, height_value, width_value, fps_value)
                _, tracks, _ = validate_scene(value, sizes, grouped(slot_values))
            except InputError as error:
                return f"⚠ {error}"
            return f"✓ {len(tracks)} path(s), valid for {sizes['num_frames']} frames at {sizes['width']}×{sizes['height']}"

        for trigger in (canvas, frames, fps):
            trigger.change(check, [canvas, *sizes_in, *flat_slots], status)

        def preview(value, frames_value, height_value, width_value, fps_value, bg, folder, *slot_values):
            folder = session_folder(folder, root)
            try:
                sizes = settings(frames_value, height_value, width_value, fps_value)
                _, tracks, _ = validate_scene(value, sizes, grouped(slot_values))
                bg_path = keep_upload(bg, folder, IMAGE_SUFFIXES, "background") if bg else None
            except InputError as error:
                raise fail(error) from None
            return (*preview_gifs(tracks, sizes, bg_path, folder), folder)

        preview_button.click(preview, [canvas, *sizes_in, background, session, *flat_slots],
                             [preview_paths, preview_flow, session])

        # -- prompt: entity phrases highlighted, missing ones flagged
        def highlight(prompt_value, *phrase_values):
            return prompt_phrases(prompt_value or "", [p or "" for p in phrase_values])

        for trigger in (prompt, *texts):
            trigger.change(highlight, [prompt, *texts], phrases)

        # -- load a saved scene
        def on_load(path, value, frames_value, height_value, width_value, fps_value, folder):
            if not path:
                return [gr.skip()] * (2 + 2 * count)
            folder = session_folder(folder, root)
            try:
                sizes = settings(frames_value, height_value, width_value, fps_value)
                kept = keep_upload(path, folder, LOAD_SUFFIXES, "scene file")
                loaded = scene_from_file(kept, **sizes)[:count]
            except InputError as error:
                raise fail(error) from None
            points = {"entities": [{"points": e.points} for e in loaded], "width": sizes["width"], "height": sizes["height"]}
            labels_ = [e.text for e in loaded] + [""] * (count - len(loaded))
            new = canvas_value(json.dumps(points), count, sizes["width"], sizes["height"], None, labels_, replace_points=True)
            out = [new, folder]
            for i in range(count):
                out += [labels_[i], gr.update(value=loaded[i].start if i < len(loaded) else 0)]
            return out

        load_outputs = [canvas, session]
        for i in range(count):
            load_outputs += [texts[i], slots[i][3]]
        load.change(on_load, [load, canvas, *sizes_in, session], load_outputs)

        # -- generate (one at a time per process; the others wait in the queue and say so)
        def on_generate(value, frames_value, height_value, width_value, fps_value, prompt_value, steps_value, seed_value,
                        guidance_value, folder, *slot_values, progress=gr.Progress(track_tqdm=True)):
            folder = session_folder(folder, root)
            try:
                sizes = settings(frames_value, height_value, width_value, fps_value)
                out = generate_job(backend, folder, value, sizes, prompt_value, steps_value, seed_value, guidance_value,
                                   grouped(slot_values))
            except InputError as error:
                raise fail(error) from None
            files_out = [out["video"], out["track"], out["sidecar"], out["manifest"]]
            return out["video"], out["overlay"], files_out, f"✓ generated with `{backend.model_id}`", folder

        event = run.click(on_generate, [canvas, *sizes_in, prompt, steps, seed, guidance, session, *flat_slots],
                          [video, overlay, files, result, session], concurrency_limit=1, concurrency_id="generate")
        cancel.click(None, None, None, cancels=[event])
    return demo, root
