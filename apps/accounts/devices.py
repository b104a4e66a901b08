"""Device description of a session from its User-Agent (and the client's optional device name).

A deliberately small parser: it names the common browsers, apps and operating systems well
enough for a "your sessions" list; the raw User-Agent is kept alongside.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

_OS = [
    (re.compile(r"iPhone|iPad|iPod"), "iOS"),
    (re.compile(r"Android"), "Android"),
    (re.compile(r"Windows NT"), "Windows"),
    (re.compile(r"Mac OS X|Macintosh"), "macOS"),
    (re.compile(r"CrOS"), "ChromeOS"),
    (re.compile(r"Linux"), "Linux"),
]
_CLIENT = [
    (re.compile(r"Edg/"), "Edge"),
    (re.compile(r"OPR/|Opera"), "Opera"),
    (re.compile(r"Firefox/"), "Firefox"),
    (re.compile(r"Chrome/|CriOS/"), "Chrome"),
    (re.compile(r"Safari/"), "Safari"),
    (re.compile(r"^K2[-/ ]?(iOS|Android|App)", re.IGNORECASE), "K2 app"),
    (re.compile(r"^curl/"), "curl"),
    (re.compile(r"python-httpx|python-requests|aiohttp"), "Python client"),
]


def _match(table: list[tuple[re.Pattern[str], str]], ua: str) -> str:
    for pattern, name in table:
        if pattern.search(ua):
            return name
    return "Unknown"


def describe(user_agent: str, device_name: str = "") -> dict[str, Any]:
    ua = (user_agent or "")[:512]
    return {
        "name": (device_name or "").strip()[:100],
        "client": _match(_CLIENT, ua),
        "os": _match(_OS, ua),
        "user_agent": ua,
    }


def fingerprint(user_agent: str, device_name: str = "") -> str:
    """What makes a device 'known' for new-device notices: same UA string and device name."""
    return hashlib.sha256(
        f"{(user_agent or '')[:512]}|{(device_name or '').strip()[:100]}".encode()
    ).hexdigest()
