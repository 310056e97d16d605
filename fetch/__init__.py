"""``python -m fetch DATASET`` (``make fetch``): download the public files of a named dataset into ``data/``.

Not part of any stage (no stage imports it): it fills ``data/<dataset>/``, which the configs then read.

Usage::

    python -m fetch --list                     # the datasets fetch/datasets.yaml holds
    python -m fetch gtex-v8 --list             # a dataset's files, URLs and checksums
    python -m fetch gtex-v8                    # all its files -> data/gtex-v8/
    python -m fetch gtex-v8 --only lung whole_blood sample-attributes
    python -m fetch gse85217 --dest /mnt/volume/data
    python -m fetch gtex-v8 --list --sizes     # with each file's size as the server announces it
    python -m fetch --manifest gdc_manifest.txt  # the GDC cart's files -> data/gdc/<id>/<name>

Files land in ``<dest>/<dataset>/<path>``, written by one fetch at a time per dataset folder (a lock,
``shared.artifacts.ExclusiveLock``). Everything here is standard library (urllib) plus tqdm, PyYAML and pydantic.

The modules, one job each:

    datasets.yaml   the datasets: description, homepage, notes, files (URL, destination path, published checksums)
    registry.py     reads, validates (a pydantic model) and expands datasets.yaml into ``REGISTRY``; ``--only``
    download.py     one file: resumable (``.part``, ``Range``, ``os.replace``), checked, mirrors (``resolve_url``)
    checksums.py    published checksums and ``SHA256SUMS`` (trust on first use)
    gdc.py          a GDC portal manifest as a dataset (``--manifest``)
    cli.py          ``fetch_dataset`` (a dataset's files under its lock), ``--list``, ``main``
    __main__.py     ``python -m fetch``

Errors
    HTTP 404/5xx, refused or lost connections, an unknown dataset or ``--only`` name, a malformed registry and
    checksum mismatches are ``shared.errors.UserError``: one line on stderr naming the file or URL and what to do,
    exit code 2.

Overriding where files come from (tests, mirrors)
    Two ways, both supported:

    - ``cli.main(argv, registry=...)`` and ``cli.fetch_dataset(name, dest, registry=...)`` take a registry (same
      shape as ``registry.REGISTRY``) instead of the built-in one; ``download.fetch_file`` takes one file entry and
      its URL explicitly.
    - The environment variable ``ONCOXAI_FETCH_MIRROR`` (e.g. ``http://127.0.0.1:8000`` or
      ``https://mirror.example.org/prefix``) replaces the scheme and host of every URL; the URL's path (and query)
      is kept and appended to the mirror's own path. The tests use both.
"""
