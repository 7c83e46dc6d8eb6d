"""Name a session's client from its User-Agent: browser (with major version) and operating system.

The sessions list must let a member tell "Chrome on Android" from "Firefox on Android" and from a
laptop, so a few ordered patterns cover the browsers people use; everything else falls back to the
first product token ("python-httpx", "curl") or "Unknown". This is for display only: a User-Agent
is whatever the client says, so nothing security-relevant depends on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNKNOWN_BROWSER = "Unknown browser"
UNKNOWN_OS = "Unknown OS"

# Order matters: Edge, Opera and Samsung Internet also say "Chrome/", and Chrome says "Safari/".
_BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"\b(?:OPR|OPT|Opera)/(\d+)")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/(\d+)")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"(?:\bCriOS|\bChrome|HeadlessChrome)/(\d+)")),
    ("Chromium", re.compile(r"\bChromium/(\d+)")),
    ("Safari", re.compile(r"\bVersion/(\d+)(?:\.\d+)*(?: Mobile/\S+)? Safari/")),
)
_PRODUCT = re.compile(r"^([A-Za-z][\w.\-]*)(?:/(\d[\w.\-]*))?")
_WINDOWS = {"10.0": "Windows", "6.3": "Windows 8.1", "6.2": "Windows 8", "6.1": "Windows 7"}


@dataclass(frozen=True, slots=True)
class Client:
    """What a User-Agent says: `browser` ("Chrome 120"), `os` ("Android 14"), `device` label."""

    browser: str
    os: str
    device: str


def _browser(agent: str) -> tuple[str, str]:
    """(name with version, bare name); the bare name goes into the short device label."""
    for name, pattern in _BROWSERS:
        match = pattern.search(agent)
        if match:
            return f"{name} {match.group(1)}", name
    if agent and not agent.startswith("Mozilla/"):
        product = _PRODUCT.match(agent)
        if product:
            version = f" {product.group(2)}" if product.group(2) else ""
            return f"{product.group(1)}{version}", product.group(1)
    return UNKNOWN_BROWSER, ""


def _os(agent: str) -> tuple[str, str]:
    """(name with version where it means something, device-ish name for the label)."""
    if match := re.search(r"\bAndroid (\d+)", agent):
        return f"Android {match.group(1)}", "Android"
    if "Android" in agent:
        return "Android", "Android"
    if match := re.search(r"\biPhone OS (\d+)", agent):
        return f"iOS {match.group(1)}", "iPhone"
    if "iPhone" in agent:
        return "iOS", "iPhone"
    if "iPad" in agent:
        match = re.search(r"\bCPU OS (\d+)", agent)
        return (f"iPadOS {match.group(1)}" if match else "iPadOS"), "iPad"
    if match := re.search(r"\bWindows NT (\d+\.\d+)", agent):
        name = _WINDOWS.get(match.group(1), "Windows")
        return name, "Windows"
    if "Windows" in agent:
        return "Windows", "Windows"
    if "CrOS" in agent:
        return "ChromeOS", "ChromeOS"
    if "Macintosh" in agent or "Mac OS X" in agent:
        return "macOS", "Mac"  # browsers freeze the version they report, so none is shown
    if "Linux" in agent or "X11" in agent:
        return "Linux", "Linux"
    return UNKNOWN_OS, ""


def parse_user_agent(user_agent: str | None) -> Client:
    agent = (user_agent or "").strip()
    if "vonix-bot" in agent.lower():
        return Client("Vonix bot", _os(agent)[0], "bot")
    browser, browser_name = _browser(agent)
    os_name, os_label = _os(agent)
    if browser_name and os_label:
        device = f"{browser_name} on {os_label}"
    else:
        device = browser_name or os_label or "Unknown device"
    return Client(browser, os_name, device[:64])
