"""Images as each vendor accepts them: byte for byte as uploaded, scaled down only past its limits.

A vendor refuses an image sent inline over its size in bytes (of the base64 text the request
carries, the stricter reading) and, for Anthropic, over its edge in pixels: such an image is
scaled down here, in its own format (a GIF, whose first frame alone is read, becomes a PNG),
first to the edge the vendor works at anyway, then smaller until it fits. CHAT_IMAGE_MAX_BYTES
(`{"openai": bytes, "anthropic": bytes}`) lowers a vendor's byte limit, e.g. for a local server
that accepts less.
"""

import functools
import io
import logging
from dataclasses import dataclass, replace

from chat import conf
from chat.providers.base import Attachment

log = logging.getLogger("chat.providers")


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int  # of the image's base64 text
    max_edge: int | None  # pixels, either side; None: no documented limit
    work_edge: int  # the long edge the vendor scales an image to itself: a smaller image loses nothing
    many_images: int | None = None  # past this many images in one request...
    many_max_edge: int | None = None  # ...this edge applies
    animation: bool = True  # takes an animated GIF (and reads its first frame)


# Anthropic, "Vision" guide (platform.claude.com/docs/en/build-with-claude/vision), "General
# limits": 5 MB per image through the API (refused as "image exceeds 5 MB maximum: N bytes >
# 5242880 bytes"), 8000x8000 px at most, 2000x2000 px when a request carries more than 20 images;
# an image over 1568 px on its long edge is scaled down by the API before the model sees it.
ANTHROPIC = ImageLimits(
    max_bytes=5 * 1024 * 1024, max_edge=8000, work_edge=1568, many_images=20, many_max_edge=2000
)
# OpenAI, "Images and vision" guide (developers.openai.com/api/docs/guides/images-vision): 20 MB
# per image (50 MB per request); at high detail an image is fitted within 2048x2048 px; GIFs
# only if not animated (an animated one is sent as its first frame, a PNG).
OPENAI = ImageLimits(max_bytes=20 * 1024 * 1024, max_edge=None, work_edge=2048, animation=False)

LIMITS = {"anthropic": ANTHROPIC, "openai": OPENAI}
SHRINK = 0.75  # each further step, when the work edge is not small enough yet
SMALLEST_EDGE = 64  # below this, the image is sent as it is (and the vendor says why not)
_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "PNG"}


def encoded_size(size: int) -> int:
    """The length of `size` bytes in base64."""
    return 4 * ((size + 2) // 3)


def limits_for(vendor: str) -> ImageLimits:
    limits = LIMITS[vendor]
    overrides = conf.get("CHAT_IMAGE_MAX_BYTES")
    override = overrides.get(vendor) if isinstance(overrides, dict) else None
    if isinstance(override, int | str) and str(override).strip().isdigit() and int(override) > 0:
        return replace(limits, max_bytes=min(int(override), limits.max_bytes))
    return limits  # unset, or not a number of bytes: the vendor's own limit


def image_fit(attachment: Attachment, *, vendor: str, images_in_request: int = 1) -> Attachment:
    """The image as `vendor` accepts it: the same object when it fits, else scaled down.

    The last few scaled are kept: a conversation sends its images again with every question
    and every tool round, and the same upload read again is an equal Attachment (its bytes'
    hash, computed once per bytes object, finds it)."""
    limits = limits_for(vendor)
    max_edge = limits.max_edge
    if limits.many_images is not None and images_in_request > limits.many_images:
        max_edge = limits.many_max_edge
    width, height = attachment.width, attachment.height
    fits_bytes = encoded_size(attachment.size) <= limits.max_bytes
    fits_edge = max_edge is None or bool(width and height and max(width, height) <= max_edge)
    maybe_animated = attachment.content_type == "image/gif" and not limits.animation
    if fits_bytes and fits_edge and not maybe_animated:
        return attachment
    try:
        return _scaled(attachment, limits, max_edge, fits_bytes)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds; the vendor says what is wrong
        log.warning("Image %r not scaled down: %s", attachment.name, exc)
        return attachment


@functools.lru_cache(maxsize=8)
def _scaled(
    attachment: Attachment, limits: ImageLimits, max_edge: int | None, fits_bytes: bool
) -> Attachment:
    from PIL import Image  # only for an image that may have to change: most never do

    with Image.open(io.BytesIO(attachment.data)) as opened:
        width, height = opened.size  # from the header: no pixels decoded yet
        long_edge = max(width, height)
        fits_edge = max_edge is None or long_edge <= max_edge
        animated = getattr(opened, "is_animated", False) and not limits.animation
        if fits_bytes and fits_edge and not animated:
            return attachment  # its size was not known, or it was a still GIF: it fits
        target = long_edge
        if not (fits_bytes and fits_edge):
            # Bytes go with the area: a first guess at the edge that fits, short of the work edge.
            guess = long_edge * (limits.max_bytes / encoded_size(attachment.size)) ** 0.5 * 0.9
            target = int(min(long_edge, limits.work_edge, max_edge or long_edge, max(guess, SMALLEST_EDGE)))
        opened.seek(0)  # an animation's first frame, the one the vendors read
        opened.draft("RGB", (target, target))  # a JPEG decodes at 1/2 to 1/8 scale: far faster
        if opened.mode in ("RGB", "RGBA", "L"):
            image = opened  # no copy of a large image's pixels
        else:
            image = opened.convert("RGBA" if opened.mode in ("P", "PA", "LA") else "RGB")
        kind = _FORMATS.get(attachment.content_type, "PNG")
        while True:
            scale = target / long_edge
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            data = _encode(image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), kind)
            if encoded_size(len(data)) <= limits.max_bytes or target <= SMALLEST_EDGE:
                break
            target = int(target * SHRINK)
    log.info("Image %r scaled from %dx%d to %dx%d as %s", attachment.name, width, height, *size, kind)
    content_type = "image/jpeg" if kind == "JPEG" else f"image/{kind.lower()}"
    return replace(attachment, data=data, content_type=content_type, width=size[0], height=size[1])


def _encode(image, kind: str) -> bytes:
    out = io.BytesIO()
    if kind == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    elif kind == "WEBP":
        image.save(out, "WEBP", quality=85)
    else:
        image.save(out, "PNG")
    return out.getvalue()
