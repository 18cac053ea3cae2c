"""The admin API: a token-protected listener for operators, separate from the data path.

See docs/admin-api.md. ``config`` holds the ``admin:`` section, ``listener`` the socket
each worker serves it on, ``app`` the BlackSheep application and its endpoints.
"""
