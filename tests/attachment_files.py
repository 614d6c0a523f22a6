"""Real files for attachment tests: images made with Pillow, a small PDF written by hand, text."""

import io
import random

from PIL import Image

from chat.providers import Attachment


def png(width: int = 40, height: int = 30, *, noisy: bool = False, name: str = "photo.png") -> Attachment:
    """A PNG; `noisy` pixels do not compress, so its bytes grow with its area."""
    if noisy:
        rng = random.Random(width * 7919 + height)
        image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (200, 80, 40))
    out = io.BytesIO()
    image.save(out, "PNG")
    return Attachment(name=name, content_type="image/png", data=out.getvalue(), width=width, height=height)


def gif(*, frames: int = 1, name: str = "anim.gif") -> Attachment:
    images = [Image.new("RGB", (16, 12), (i * 60 % 256, 0, 0)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=frames > 1, append_images=images[1:], duration=100, loop=0)
    return Attachment(name=name, content_type="image/gif", data=out.getvalue(), width=16, height=12)


def pdf_bytes(*pages: str) -> bytes:
    """A real PDF, one page per string, each showing its text in Helvetica."""
    count = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
    ]
    font = 3 + 2 * count
    for i, text in enumerate(pages):
        stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def pdf(*pages: str, name: str = "report.pdf") -> Attachment:
    pages = pages or ("Quarterly results are in",)
    return Attachment(
        name=name, content_type="application/pdf", data=pdf_bytes(*pages), text="\n".join(pages)
    )


def text(
    content: str = "a,b\n1,2\n", *, name: str = "data.csv", content_type: str = "text/csv"
) -> Attachment:
    return Attachment(name=name, content_type=content_type, data=content.encode(), text=content)
