"""mkdocs hook (mkdocs.yml ``hooks:``): fills each page's ``<!-- generated: NAME -->`` lines from the code's
declarations and docs/data/ (shared/docs/), at build time."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])


def on_page_markdown(markdown, page, config, files):
    # the repository on the path at call time: mkdocs restores sys.path after loading this file
    if ROOT not in sys.path:
        sys.path.append(ROOT)
    from shared.docs import render

    return render(markdown, page.file.src_path)
