"""A card's compiled algorithm box as a PNG cropped to the box (the README's
docs/images/GPT2-card.png).  Needs pdflatex and pdftoppm (poppler-utils).

    python scripts/card_png.py cards/GPT2.card docs/images/GPT2-card.png
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DPI, PAD = 150, 12  # pixels of white kept around the box


def main(card: str, out: str) -> None:
    tex = subprocess.run(["cardgen", "render", card, "--format", "tex", "--standalone"],
                         capture_output=True, text=True, check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "box.tex").write_text(tex, "ascii")
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "box.tex"],
                       cwd=tmp, check=True, capture_output=True)
        # the page in grey at the same resolution, to find where the ink is
        subprocess.run(["pdftoppm", "-gray", "-r", str(DPI), "-singlefile", "box.pdf", "page"], cwd=tmp, check=True)
        pgm = Path(tmp, "page.pgm").read_bytes()
        _, w, h, _, pixels = pgm.split(maxsplit=4)
        ink = np.frombuffer(pixels, np.uint8).reshape(int(h), int(w)) < 250
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        x, y = cols[0] - PAD, rows[0] - PAD
        width, height = cols[-1] - cols[0] + 2 * PAD, rows[-1] - rows[0] + 2 * PAD
        subprocess.run(["pdftoppm", "-png", "-r", str(DPI), "-singlefile", "-x", str(x), "-y", str(y),
                        "-W", str(width), "-H", str(height), "box.pdf", "crop"], cwd=tmp, check=True)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(Path(tmp, "crop.png").read_bytes())


if __name__ == "__main__":
    main(*sys.argv[1:])
