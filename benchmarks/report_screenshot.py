"""A screenshot of a report's first screen for the README: headless Chromium, then a 256-colour PNG (small).

    python benchmarks/report_screenshot.py runs/default-seeds/index.html docs/report.png

Needs Debian's `chromium` (apt-get install -y chromium). The page opens from disk, without network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--hide-scrollbars")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--size", default="1180,1500", help="window width,height in CSS pixels")
    parser.add_argument("--colours", type=int, default=256)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={args.size}",
                        f"--screenshot={shot}", args.page.resolve().as_uri()], check=True, capture_output=True, timeout=120)
        image = Image.open(shot).convert("RGB").quantize(colors=args.colours, method=Image.Quantize.FASTOCTREE)
        args.png.parent.mkdir(parents=True, exist_ok=True)
        image.save(args.png, optimize=True)
    print(f"{args.png}: {args.png.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
