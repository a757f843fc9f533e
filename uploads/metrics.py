"""The uploads' own metrics and client error codes, declared through the core's public API."""

from realtime import counter, register_error_codes

RECEIVED_BYTES = counter("uploads_received_bytes_total", "Upload bytes stored (tus PATCH bodies).")
FINISHED = counter("uploads_finished_total", "Uploads whose last byte was stored.")

# The tus protocol's answers (uploads.protocol, uploads.service), counted by name at /metrics.
register_error_codes("conflict", "unsupported_version", "locked", "too_many_uploads", "checksum_mismatch")
