"""A new live feature from the core's app template (``manage.py startlive <name>``).

The template (``realtime/app_template/``) holds ``<name>/`` and
``tests/<name>/`` as files ending in ``-tpl``, so nothing imports, collects
or lints them where they are. A path part ``app_name`` becomes the name, and
in the text the placeholders of :func:`placeholders` are replaced as plain
text: not through a template engine, so the page's own Django tags and the
braces of Python, JavaScript and CSS pass through as written.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import shutil
from pathlib import Path

from django.apps import apps
from django.core.exceptions import ValidationError
from django.urls import NoReverseMatch, Resolver404, resolve, reverse

from . import topics, views

TEMPLATE = Path(__file__).resolve().parent / "app_template"
PLACEHOLDER = "app_name"  # in a path, the part that becomes the name
SUFFIX = "-tpl"
# A Python package, a URL path, a topic kind and a channel-layer group name all at once.
# Short enough that the generated lines stay within the project's line length.
MAX_LENGTH = 24
NAME_RE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*\Z")


def placeholders(name: str) -> dict[str, str]:
    """Return what each placeholder of the template's text becomes for ``name``."""
    return {
        "{{ app_name }}": name,
        "{{ camel_case_app_name }}": "".join(part.capitalize() for part in name.split("_")),
        "{{ app_title }}": name.replace("_", " ").capitalize(),
    }


def check_name(name: str, root: Path) -> None:
    """Raise ValidationError, saying why, unless ``name`` can be a new app in the project at ``root``."""
    if not name.isidentifier():
        raise ValidationError(f"'{name}' is not a valid Python identifier: it names the app's package.")
    if keyword.iskeyword(name):
        raise ValidationError(f"'{name}' is a Python keyword: no package can be named so.")
    if not NAME_RE.match(name) or len(name) > MAX_LENGTH:
        raise ValidationError(
            f"'{name}' is not a valid name here: use lowercase ASCII letters and digits, words joined "
            f"by single underscores, starting with a letter, at most {MAX_LENGTH} characters (the name "
            "is also a URL path and a channel-layer group name)."
        )
    for config in apps.get_app_configs():
        if name in (config.label, config.name, config.name.rpartition(".")[2]):
            raise ValidationError(f"'{name}' is the name of an installed app ({config.name}).")
    for path in (root / name, root / "tests" / name):
        if path.exists():
            raise ValidationError(f"'{name}' is taken: {path} already exists.")
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        where = spec.origin or ", ".join(spec.submodule_search_locations or ())
        raise ValidationError(f"'{name}' is the name of an existing Python module ({where}): pick another.")
    if name in topics.kinds():
        raise ValidationError(f"'{name}' is the kind of an installed app's topic: pick another.")
    check_urls(name)


def check_urls(name: str) -> None:
    """Raise ValidationError if the project already serves the app's URLs or uses its URL names."""
    for url in (f"/{name}/", f"/api/{name}"):
        try:
            match = resolve(url)
        except Resolver404:
            continue
        # Under /api/ a catch-all answers any URL no app serves: the API's URL is free if only it
        # matches (the page's is not: /api/ itself is the API's prefix).
        if url == f"/{name}/" or match.func is not views.not_found:
            raise ValidationError(f"'{name}' is taken: the project serves {url} already.")
    for url_name in (name, f"api-{name}", f"sse-{name}"):
        try:
            reverse(url_name)
        except NoReverseMatch:
            continue
        raise ValidationError(f"'{name}' is taken: the project has a URL named '{url_name}' already.")


def render(name: str) -> dict[Path, str]:
    """Return each file of the new app, by its path relative to the project's root, with its text."""
    values = placeholders(name)
    files = {}
    for source in sorted(TEMPLATE.rglob(f"*{SUFFIX}")):
        parts = [part.replace(PLACEHOLDER, name) for part in source.relative_to(TEMPLATE).parts]
        parts[-1] = parts[-1].removesuffix(SUFFIX)
        text = source.read_text()
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        files[Path(*parts)] = text
    return files


def create(name: str, root: Path) -> list[Path]:
    """Write the app ``name`` into the project at ``root``; return the files written.

    The name is checked first (:func:`check_name`); if writing fails part-way,
    the folders it made are removed again, so a refusal or a failure leaves
    the project as it was.
    """
    check_name(name, root)
    files = render(name)
    made = [root / name, root / "tests" / name]
    try:
        for relative, text in files.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    except BaseException:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return [root / relative for relative in files]
