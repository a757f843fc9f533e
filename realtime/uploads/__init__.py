"""Resumable uploads: a tus 1.0 server at ``/api/uploads/`` (CONTRACT.md section 5).

- ``protocol``: tus headers in and out (versions, metadata, offsets, checksums)
- ``files``: bytes on disk and in storage (partial files, hand-off, serving)
- ``service``: the rules (quota, limits, progress, completion, cleanup)
- ``views``: the HTTP endpoints, behind the same ``MIDDLEWARE`` as every view

See docs/uploads.md for the design and its trade-offs.
"""
