"""QQ numbers (uin): the range every member number the plugin reads or stores must be within.

Accounts start at 10000 (the first one ever issued) and QQ's protocol carries a uin as a 32-bit
unsigned number: 5 to 10 digits. Anything else (0, 20 digits, an @-mention of a 5,000-digit number)
is refused where it is typed and dropped where it is read back from a file.
"""

from __future__ import annotations

MIN_QQ = 10_000
MAX_QQ = 2**32 - 1


def is_qq(number: object) -> bool:
    return isinstance(number, int) and not isinstance(number, bool) and MIN_QQ <= number <= MAX_QQ
