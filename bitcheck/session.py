"""`from bitcheck.session import Session`: where users' own loops import it from (README, level 3).
The Session lives with the rest of the user's-code layer in bitcheck/user/session.py."""
from bitcheck.user.session import USER_HORIZON, Session

__all__ = ["Session", "USER_HORIZON"]
