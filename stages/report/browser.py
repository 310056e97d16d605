"""python -m stages.report.browser PAGE.html: open a report (or the experiments' index) in headless Chromium.

The check a collaborator's browser would make, with the network blocked: every request that is not the page's own
file or an inline ``data:`` URI is aborted and counted as a failure, console errors and uncaught exceptions are
recorded, every image must decode and carry alt text, no dialog may open (an unescaped ``<script>`` would), the page
must fit a phone's width (tables scroll inside their own box) and print without overflowing the paper. A full-page
screenshot is saved beside each page (``screenshot.png``). From an index page, every local report it links to is
checked the same way.

Needs Chromium (Debian's ``chromium`` package; ``CHROMIUM`` names another binary) and Playwright (the ``dev``
extra); Playwright never downloads a browser here. Exit 0 when every page passes, 1 with one line per problem,
2 when no browser can be started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: Chromium's flags for a headless run in a container or CI (no sandbox as root, no background traffic)
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 390, "height": 844}


class BrowserUnavailable(RuntimeError):
    """No Chromium or no Playwright here: the check cannot run (not a failure of the page)."""


@dataclass
class PageCheck:
    page: Path
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    images_without_alt: int = 0
    n_images: int = 0
    n_tables: int = 0
    phone_overflow_px: int = 0
    print_overflow_px: int = 0
    links: list[Path] = field(default_factory=list)
    screenshot: Path | None = None

    def problems(self) -> list[str]:
        out = [f"console error: {m}" for m in self.console_errors]
        out += [f"request failed: {u}" for u in self.failed_requests]
        out += [f"request to the network: {u}" for u in self.blocked_requests]
        out += [f"a dialog opened: {m!r}" for m in self.dialogs]
        out += [f"image does not decode: {m}" for m in self.broken_images]
        if self.images_without_alt:
            out.append(f"{self.images_without_alt} image(s) without alt text")
        if self.phone_overflow_px > 1:
            out.append(f"wider than a phone ({PHONE['width']} px) by {self.phone_overflow_px} px")
        if self.print_overflow_px > 1:
            out.append(f"wider than the printed page by {self.print_overflow_px} px")
        return [f"{self.page}: {p}" for p in out]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    if not path:
        raise BrowserUnavailable("no Chromium found (Debian: apt-get install chromium; or set CHROMIUM=/path/to/it)")
    return path


_IMAGES = """async () => {
  const broken = [];
  for (const img of Array.from(document.images)) {
    try { await img.decode(); } catch (e) { broken.push(img.alt || img.src.slice(0, 80)); continue; }
    if (!img.naturalWidth || !img.naturalHeight) broken.push(img.alt || img.src.slice(0, 80));
  }
  return {n: document.images.length, broken: broken,
          noAlt: Array.from(document.images).filter(i => !(i.getAttribute("alt") || "").trim()).length,
          tables: document.querySelectorAll("table").length,
          links: Array.from(document.querySelectorAll("a[href]")).map(a => a.getAttribute("href"))};
}"""
_OVERFLOW = "() => Math.max(0, document.documentElement.scrollWidth - window.innerWidth)"


def _check(context, page_path: Path, screenshot: bool) -> PageCheck:
    result = PageCheck(page_path)
    page = context.new_page()
    page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: result.console_errors.append(str(exc)))
    page.on("requestfailed", lambda r: result.failed_requests.append(f"{r.url} ({r.failure})"))

    def on_dialog(dialog):
        result.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.set_viewport_size(DESKTOP)
    page.goto(page_path.resolve().as_uri(), wait_until="load")
    facts = page.evaluate(_IMAGES)
    result.n_images, result.broken_images = facts["n"], facts["broken"]
    result.images_without_alt, result.n_tables = facts["noAlt"], facts["tables"]
    for href in facts["links"]:
        if "://" not in href and not href.startswith(("#", "data:", "mailto:")):
            result.links.append((page_path.parent / href.split("#")[0]).resolve())
    if screenshot:
        result.screenshot = page_path.parent / "screenshot.png"
        tmp = result.screenshot.with_name(f".screenshot.png.tmp-{os.getpid()}")
        page.screenshot(path=str(tmp), type="png", full_page=True)
        os.replace(tmp, result.screenshot)
    page.set_viewport_size(PHONE)
    result.phone_overflow_px = int(page.evaluate(_OVERFLOW))
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 720, "height": 1000})  # A4 at 96 dpi less margins is about 720 px wide
    result.print_overflow_px = int(page.evaluate(_OVERFLOW))
    page.close()
    return result


def check_pages(index: Path, screenshot: bool = True) -> list[PageCheck]:
    """Open ``index`` and every local page it links to (once each) in headless Chromium, network blocked."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserUnavailable(f"Playwright is not installed ({exc}); pip install -e '.[dev]'") from exc
    executable = chromium_path()
    results: list[PageCheck] = []
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        except Exception as exc:  # noqa: BLE001 - whatever stops the browser, the check cannot run
            raise BrowserUnavailable(f"{executable} did not start: {str(exc).splitlines()[0]}") from exc
        try:
            context = browser.new_context(offline=True, java_script_enabled=True)
            blocked: list[str] = []

            def route(r):
                url = r.request.url
                if url.startswith(("file://", "data:", "about:")):
                    r.continue_()
                else:
                    blocked.append(url)
                    r.abort("blockedbyclient")

            context.route("**/*", route)
            todo, seen = [index.resolve()], set()
            while todo:
                path = todo.pop(0)
                if path in seen:
                    continue
                seen.add(path)
                blocked.clear()
                check = _check(context, path, screenshot) if path.is_file() else PageCheck(path)
                if not path.is_file():
                    check.failed_requests.append("linked page does not exist")
                check.blocked_requests = list(blocked)
                results.append(check)
                todo += [p for p in check.links if p.suffix == ".html"]
        finally:
            browser.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.report.browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="a report's index.html, or outputs/index.html")
    parser.add_argument("--no-screenshot", action="store_true")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"error: {args.page}: no such page; run make all (or make demo) first", file=sys.stderr)
        return 2
    try:
        results = check_pages(args.page, screenshot=not args.no_screenshot)
    except BrowserUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = [p for r in results for p in r.problems()]
    for r in results:
        print(
            f"{r.page}: {r.n_images} images, {r.n_tables} tables"
            + (f", screenshot {r.screenshot}" if r.screenshot else "")
        )
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
