"""Reading an invoice PDF back as a person (and a banking app) would: its text, and the QR
codes on a rendered page image."""

import io

import pypdfium2
import zxingcpp
from pypdf import PdfReader


def pdf_pages_text(content: bytes) -> list[str]:
    reader = PdfReader(io.BytesIO(content))
    return [page.extract_text() for page in reader.pages]


def pdf_text(content: bytes) -> str:
    return "\n".join(pdf_pages_text(content))


def qr_codes(content: bytes, page: int = 0, scale: float = 3.0) -> list[str]:
    """Render one page to pixels (about 216 dpi) and decode every QR code on it."""
    document = pypdfium2.PdfDocument(content)
    try:
        image = document[page].render(scale=scale).to_pil()
    finally:
        document.close()
    return [
        result.text
        for result in zxingcpp.read_barcodes(image)
        if result.format == zxingcpp.BarcodeFormat.QRCode
    ]
