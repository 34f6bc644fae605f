"""Settings read from the environment or `.env` (every one is listed in `.env.example`)."""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from nailong_vision import decode

from . import audit, recent
from .i18n import DEFAULT_LOCALE, LOCALES, lang, supported
from .warning import parse_template

# The warning in the default language; Config.default_warning gives it in NAILONG_LANGUAGE.
DEFAULT_REPLY_TEXT = lang(DEFAULT_LOCALE)("warning", "default")

MIN_TOKEN_LENGTH = 16
MIN_TOKEN_DISTINCT = 8
MIN_TOKEN_BITS = 40
TOKEN_RECIPE = '生成一个 / make one: python -c "import secrets; print(secrets.token_urlsafe(32))"'


def token_weakness(token: str) -> tuple[str, str] | None:
    """Why ``token`` is too easy to guess ("中文", "English"), or None. The entropy is estimated from
    how often each character occurs, so repeats and short alphabets count for little; a random
    token_urlsafe(12) (16 characters) always passes, 16 spaces or "passwordpassword" do not."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"只有 {len(token)} 个字符", f"only {len(token)} characters"
    counts = Counter(token)
    bits = -sum(n * math.log2(n / len(token)) for n in counts.values())
    if len(counts) < MIN_TOKEN_DISTINCT:
        return f"只有 {len(counts)} 种不同字符", f"only {len(counts)} different characters"
    if bits < MIN_TOKEN_BITS:
        return f"估计熵只有 {bits:.0f} 位", f"an estimated {bits:.0f} bits of entropy"
    return None


class Config(BaseModel):
    # A refused setting's error never repeats its value: a mistyped token must not land in the log.
    model_config = ConfigDict(hide_input_in_errors=True)

    # None: the bundled model (its checksum is verified).
    nailong_model_path: Path | None = None
    # None: the threshold recommended in the model's metadata. Below 1: no score exceeds 1, so 1 would
    # check nothing (NAILONG_DEFAULT_ENABLED=false says that plainly).
    nailong_threshold: float | None = Field(default=None, ge=0.0, lt=1.0)
    nailong_recall: bool = True
    nailong_reply: bool = True
    # None: the catalogue's default warning in NAILONG_LANGUAGE (see default_warning).
    nailong_reply_text: str | None = None
    # The default warning and what the bot adds to a warning (the strike note) are in this language:
    # groups have no language of their own yet. Admins' commands answer in theirs (/奶龙 Chinese,
    # /nailong English).
    nailong_language: str = "zh-CN"
    nailong_mute_seconds: int = Field(default=0, ge=0, le=30 * 24 * 3600)
    # Seconds between two warnings in one group; hits inside it are still recalled. 0: warn every hit.
    nailong_reply_cooldown: float = Field(default=0.0, ge=0)
    nailong_default_enabled: bool = True
    # None: nonebot_plugin_localstore's data directory for this plugin.
    nailong_data_dir: Path | None = None
    # None: CUDA when onnxruntime offers it, else CPU.
    nailong_onnx_providers: list[str] | None = None
    # One intra-op thread is steadier than two on a busy 2-core server.
    nailong_onnx_threads: int = Field(default=1, ge=1)
    # Images decoded and classified at once (each in its own worker thread).
    nailong_workers: int = Field(default=2, ge=1)
    nailong_max_downloads: int = Field(default=4, ge=1)
    # Downloads at once from one host (QQ's image hosts excepted): a slow stranger's server gets no more.
    nailong_max_downloads_per_host: int = Field(default=2, ge=1)
    # Seconds one image may take to arrive, retries and back-off included (a local read too).
    nailong_download_deadline: float = Field(default=30.0, gt=0)
    # Directories `get_image`'s local paths may be read from; None: any, except /proc, /sys and /dev.
    nailong_local_image_dirs: list[Path] | None = None
    nailong_max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Pixels one image may decode to (a JPEG is decoded reduced, near the model's input size, first);
    # larger images are not checked. A PNG costs about 9 bytes a pixel while it is decoded.
    nailong_max_pixels: int = Field(default=decode.DEFAULT_MAX_PIXELS, ge=1)
    # Frames of an animated image classified; None: as many as the model was trained on (its metadata).
    # A number caps that (fewer frames: less CPU per GIF, a short nailong clip may be missed).
    nailong_max_frames: int | None = Field(default=None, ge=1, le=64)
    nailong_connect_timeout: float = Field(default=5.0, gt=0)
    nailong_read_timeout: float = Field(default=15.0, gt=0)
    nailong_fetch_retries: int = Field(default=2, ge=0, le=5)
    # Merged-forward messages: how deep nested forwards are opened (0: never), and at most how many
    # messages are read and images checked in one of them.
    nailong_forward_max_depth: int = Field(default=3, ge=0, le=10)
    nailong_forward_max_nodes: int = Field(default=100, ge=1)
    nailong_forward_max_images: int = Field(default=20, ge=1)
    # Seconds all the forwards of one message may take to be looked up; the message's own images never
    # wait for them, and what answered by then is checked.
    nailong_forward_deadline: float = Field(default=3.0, gt=0)
    # MiB of memory all decodes together may hold (decisions, the API, corrections, thumbnails); a
    # decode waits for room. Enough for one image at NAILONG_MAX_PIXELS.
    nailong_decode_memory_mb: int = Field(default=128, ge=16)
    nailong_cache_size: int = Field(default=4096, ge=0)
    nailong_cache_ttl: float = Field(default=24 * 3600, gt=0)
    # Decided images kept on disk so admins can correct them by replying; 0 images: keep none.
    nailong_recent_max_images: int = Field(default=recent.DEFAULT_MAX_IMAGES, ge=0)
    nailong_recent_max_bytes: int = Field(default=recent.DEFAULT_MAX_BYTES, ge=0)
    nailong_recent_max_age_hours: float = Field(default=recent.DEFAULT_MAX_AGE / 3600, gt=0)
    # The audit log (audit.jsonl) is rotated at this size; this many rotated files are kept beside it.
    nailong_audit_max_mb: float = Field(default=audit.DEFAULT_MAX_BYTES / 2**20, gt=0)
    nailong_audit_keep: int = Field(default=audit.DEFAULT_KEEP, ge=1)
    # ---- Web access (see web/auth.py). Tokens are SecretStr: their repr never shows them. ----
    # None: no HTTP API. Opens only `classify` and `status`, which change nothing.
    nailong_api_token: SecretStr | None = None
    # None: no web console. Opens the console, where admins change what the bot does in every group.
    nailong_admin_token: SecretStr | None = None
    # A console sign-in lasts this long (sessions live in memory: a restart signs everyone out).
    nailong_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # True: the session cookie is always `Secure`. False: only when the request came over HTTPS, which
    # behind a proxy the server learns from X-Forwarded-Proto (trusted from FORWARDED_ALLOW_IPS only).
    nailong_secure_cookie: bool = False
    # ---- The bot's HTTP server (uvicorn under NoneBot's FastAPI driver; see server.py) ----
    # The reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses or networks,
    # or "*". uvicorn's own setting of that name, passed to it; unlike uvicorn, nothing by default, not
    # even this machine (None): any local program could otherwise claim to be any client.
    forwarded_allow_ips: list[str] | None = None
    # Seconds a connection may stay open without a whole request: from connecting, and after each
    # answer (uvicorn's keep-alive). A WebSocket (the OneBot connection) is never cut for being quiet.
    nailong_idle_timeout: int = Field(default=10, ge=1, le=3600)
    # The HTTP API's share, apart from group checking's (README: 安全 / Security). Classify requests
    # at once, uploads and URL downloads included; one more is answered 429 with Retry-After.
    nailong_api_max_requests: int = Field(default=4, ge=1)
    # The API's URL fetch refuses loopback, private, link-local, multicast and reserved addresses,
    # after DNS and after every redirect; true lets it reach them. Group images are never limited so.
    nailong_api_allow_private_urls: bool = False

    # --- Corrections (see corrections.py) ---
    # A group admin's correction applies in that group only; it applies in every group (and is learned by
    # the refresh) when a superuser makes or confirms it, or when admins of this many groups agree on it.
    nailong_corrections_agree_groups: int = Field(default=2, ge=2, le=100)
    # The feedback folder's cap: the oldest retired copies are deleted first; past that, new corrections are refused.
    nailong_feedback_max_mb: int = Field(default=512, ge=16)

    # --- Refresh: the model learns the admins' corrections (see refresh.py) ---
    # Start a refresh on its own after enough new corrections; off: only /nailong refresh and the console.
    nailong_auto_refresh: bool = False
    nailong_auto_refresh_corrections: int = Field(default=5, ge=1)
    nailong_auto_refresh_interval_hours: float = Field(default=1.0, gt=0)
    # An interpreter with the `train` extra; None: the bot's own when torch is installed there.
    nailong_trainer_python: Path | None = None
    # The refresh's time budget, CPU threads and priority (nice 0..19: higher yields more to the bot).
    nailong_refresh_budget_seconds: int = Field(default=600, ge=10)
    # A trainer still running this long past its budget is stopped (its whole process group).
    nailong_refresh_grace_seconds: int = Field(default=300, ge=1)
    nailong_refresh_threads: int = Field(default=1, ge=1)
    nailong_refresh_nice: int = Field(default=10, ge=0, le=19)
    # A trainer config whose data folders also replay and validate (gate check c); None: the recent images only.
    nailong_refresh_config: Path | None = None

    # ---- The review band (see review.py): scores in [floor, threshold) are queued for an admin, not acted on ----
    # None: the model's review floor (a model without one has no band); 1: no band.
    nailong_review_floor: float | None = Field(default=None, ge=0.0, le=1.0)
    # Images waiting per group (the oldest goes first), and the bytes of all waiting images together.
    nailong_review_max_per_group: int = Field(default=100, ge=1, le=10_000)
    nailong_review_max_bytes: int = Field(default=200 * 1024 * 1024, ge=0)
    # Tell the superusers by private message when a group's queue reaches this many images; 0: never.
    nailong_review_notify: int = Field(default=0, ge=0)

    # ---- Who is exempt, repeat offenders (each group may change these in the chat or the console) ----
    # The group owner, admins and superusers are not checked (their images are not even downloaded).
    nailong_exempt_admins: bool = True
    # NAILONG_MUTE_SECONDS mutes from this strike on (hits of one member in one group within the window),
    # doubled on each further strike up to NAILONG_MUTE_MAX_SECONDS.
    nailong_mute_after: int = Field(default=1, ge=1, le=100)
    nailong_mute_max_seconds: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    nailong_strike_window_hours: float = Field(default=24.0, gt=0, le=30 * 24)

    @field_validator("nailong_reply_text")
    @classmethod
    def _reply_text_is_a_template(cls, value: str | None) -> str | None:
        if value is not None:
            parse_template(value)  # its TemplateError says what is wrong, in Chinese and English
        return value

    @property
    def default_warning(self) -> str:
        """NAILONG_REPLY_TEXT, or else the catalogue's default warning in NAILONG_LANGUAGE."""
        return self.nailong_reply_text or lang(self.nailong_language)("warning", "default")

    @field_validator("nailong_language")
    @classmethod
    def _language_is_in_the_catalogue(cls, value: str) -> str:
        locale = supported(value)
        if locale is None:
            raise ValueError(f"只支持 / supported: {', '.join(LOCALES)}")
        return locale

    @field_validator("nailong_onnx_providers", "nailong_local_image_dirs", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        # `.env` values that are not JSON arrive as plain strings: accept "A,B" as well as ["A","B"].
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()] or None
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(
                        f"FORWARDED_ALLOW_IPS 里的 {entry!r} 不是地址或网段（例如 127.0.0.1 或 10.0.0.0/8）/ "
                        f"{entry!r} in FORWARDED_ALLOW_IPS is not an address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                    ) from None
        return value

    @field_validator(
        "nailong_model_path", "nailong_threshold", "nailong_data_dir", "nailong_api_token", "nailong_admin_token",
        "nailong_max_frames", "nailong_trainer_python", "nailong_refresh_config", "nailong_review_floor",
        mode="before"
    )
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("nailong_api_token", "nailong_admin_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (problem := token_weakness(value.get_secret_value())):
            raise ValueError(
                f"令牌太弱：{problem[0]}。需要至少 {MIN_TOKEN_LENGTH} 个字符、{MIN_TOKEN_DISTINCT} 种不同字符，"
                f"估计熵至少 {MIN_TOKEN_BITS} 位 / token too weak: {problem[1]}. It needs at least "
                f"{MIN_TOKEN_LENGTH} characters, {MIN_TOKEN_DISTINCT} different ones and an estimated "
                f"{MIN_TOKEN_BITS} bits of entropy. {TOKEN_RECIPE}"
            )
        return value

    @model_validator(mode="after")
    def _tokens_differ(self) -> Config:
        api, admin = self.nailong_api_token, self.nailong_admin_token
        if api is not None and admin is not None and api.get_secret_value() == admin.get_secret_value():
            raise ValueError(
                "NAILONG_ADMIN_TOKEN 必须与 NAILONG_API_TOKEN 不同：API 令牌常交给别的机器人，"
                "不能打开控制台 / "
                "NAILONG_ADMIN_TOKEN must differ from NAILONG_API_TOKEN: the API token is given to other bots "
                f"and must not open the console. {TOKEN_RECIPE}"
            )
        return self
