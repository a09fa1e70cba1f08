"""Request and response bodies (pydantic v2: ``XIn`` in, ``XPublic`` out), one module per resource as in
``api/routes/``; what they share (the error body, months, the ``Instant`` type) is in ``common``.

Responses are built from store and domain values by ``from_*`` classmethods, so handlers stay one-liners
and the wire format is defined in one place. Every instant is given once and written twice, RFC 3339
UTC (``Instant``) and epoch milliseconds (its ``Twin``, filled from it: ``api.schemas.common``).
Months are ``"YYYY-MM"`` in the site's time zone. Import from the resource's module: this package
re-exports nothing, so a route's imports say which resource's bodies it speaks.
"""
