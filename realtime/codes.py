"""Close codes of live connections, in one place (the wire contract, section 3)."""

# The session or token ended (logout, password change, expiry, revocation).
SESSION_ENDED = 4401
# The user was deactivated.
USER_DEACTIVATED = 4403
# The server is restarting (SIGTERM): reconnect and resume.
SERVICE_RESTART = 1012
# The connection fell behind or lost its channel layer: reconnect a little later and resume.
TRY_AGAIN_LATER = 1013
# The server failed the connection (the database is unavailable): an ``unavailable``
# error event comes first; reconnect a little later and resume.
SERVER_ERROR = 1011
