"""What the uploads app tells other apps."""

from django.dispatch import Signal

# Sent (awaited, ``asend``) before an upload is created, with ``user`` and ``target`` (its
# topic's key, already allowed by ``can_join``): a receiver raises ClientError to refuse it
# (the chat: an upload to a new room counts as creating that room).
upload_creating = Signal()

# Sent (awaited, ``asend``) once an upload is complete and stored, with ``upload``
# and ``user``: the app that owns the upload's topic posts it there (the chat as a message).
upload_finished = Signal()
