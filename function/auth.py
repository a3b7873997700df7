"""Who is asking: the profile an HTTP request may act as.

gateway mode trusts X-Profile-Id (or profileId), set by a gateway in front of us.
jwt mode trusts only a verified bearer token: its `sub` is the profile, and a header or
query naming another profile is refused rather than silently ignored.
"""

from __future__ import annotations

from .problems import Forbidden, Unauthenticated
from .settings import Settings
from .validation import check_profile, parse_profile


def profile_of(
    authorization: str | None, claimed_header: str | None, claimed_query: str | None, settings: Settings
) -> str:
    if settings.auth_mode == "gateway":
        return parse_profile(claimed_header, claimed_query)
    profile = _verified_subject(authorization, settings)
    for claimed in (claimed_header, claimed_query):
        if claimed is not None and claimed != profile:
            raise Forbidden("the bearer token's subject is a different profile")
    return profile


def _verified_subject(authorization: str | None, settings: Settings) -> str:
    if authorization is None:
        raise Unauthenticated("send Authorization: Bearer <token>", error="")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be a Bearer token", error="invalid_request")
    assert settings.jwt_key is not None  # Settings.from_env guarantees it in jwt mode
    import jwt  # here, not at the top: imports (cryptography) a gateway-mode cold start never needs (docs/bench.md)

    try:
        claims = jwt.decode(
            token.strip(), settings.jwt_key, algorithms=list(settings.jwt_algorithms),
            audience=settings.jwt_audience, issuer=settings.jwt_issuer,
            options={"require": ["exp", "sub"]}, leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthenticated("the token is not valid yet (nbf)") from None
    except jwt.InvalidAudienceError:
        raise Unauthenticated("the token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise Unauthenticated("the token is from another issuer") from None
    except jwt.InvalidTokenError:
        raise Unauthenticated("the token is not valid (signature, format or claims)") from None
    try:
        return check_profile(claims["sub"])
    except Exception:
        raise Unauthenticated("the token's subject is not a valid profile id") from None
