"""What the uploads app tells other apps."""

from django.dispatch import Signal

# Sent (awaited, ``asend``) once an upload is complete and stored, with ``upload``
# and ``user``: the app that owns the upload's topic posts it there (the chat as a message).
upload_finished = Signal()
