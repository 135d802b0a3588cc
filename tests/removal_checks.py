"""Removal checks: each protection of docs/security.md is taken out of the code (the smallest
edit), its covering tests are run and must FAIL; the file is put back byte for byte, and the
same tests must pass on the untouched tree.

Not collected by pytest (no ``test_`` prefix). Run from the repository root:

    python tests/removal_checks.py --verify          # every edit still applies (no tests run)
    python tests/removal_checks.py [--only PREFIX]   # remove, run, restore; then run all once

Results go to stdout as a Markdown table and to ``--out`` (JSON lines) as they come.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Edit:
    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Removal:
    key: str
    protection: str
    what: str  # the edit, in words
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]


def removal(key: str, protection: str, what: str, edits: list[Edit], tests: list[str]) -> Removal:
    return Removal(key, protection, what, tuple(edits), tuple(tests))


ARCH = "backend/archives.py"
T_ARCH = "tests/test_archives.py"
T_ZIP = "tests/images/test_zip.py"
T_PRED = "tests/runs/test_predict.py"
ROUTER = "backend/auth/router.py"
T_RATE = "tests/auth/test_rate_limits.py"
AUTH = "backend/auth/service.py"
T_ACC = "tests/auth/test_accounts.py"
T_TOK = "tests/auth/test_tokens.py"
T_API = "tests/auth/test_auth_api.py"
T_SAFE = "tests/images/test_safety.py"
T_BROWSER = "tests/browser/test_security.py"

REMOVALS: list[Removal] = [
    # --- one zip walker for uploads and predictions ---
    removal(
        "zip-ratio",
        "zip: compression ratio",
        "the ratio test in ZipReader._check is `if False:`",
        [
            Edit(
                ARCH,
                "        if info.file_size and (\n"
                "            info.compress_size <= 0 or info.file_size > self.max_ratio * "
                "info.compress_size\n        ):",
                "        if False:",
            )
        ],
        [
            f"{T_ARCH}::test_limits_per_entry_and_per_zip",
            f"{T_ZIP}::test_an_entry_compressed_far_too_well_is_not_unpacked",
            f"{T_PRED}::test_every_entry_gets_an_answer_and_the_disk_holds_one_at_a_time",
        ],
    ),
    removal(
        "zip-budget",
        "zip: one unpacked-bytes budget per request",
        "ZipReader.spend never refuses (`if False:`)",
        [
            Edit(
                ARCH,
                "        self.bytes_left -= n\n        if self.bytes_left < 0:",
                "        if False:",
            )
        ],
        [
            f"{T_ARCH}::test_the_byte_budget_is_shared_by_every_zip_of_a_request",
            f"{T_ZIP}::test_unpacking_stops_at_the_total_byte_budget",
            f"{T_PRED}::test_the_zips_of_one_prediction_request_share_one_byte_budget",
        ],
    ),
    removal(
        "zip-budget-per-zip",
        "zip: the budget is per request, not per zip (predict)",
        "predict makes a new ZipReader for every zip",
        [
            Edit(
                "backend/runs/predict.py",
                "                entries = zips.enter_context(reader.entries(upload.file))",
                "                entries = zips.enter_context("
                "ZipReader(settings).entries(upload.file))",
            )
        ],
        [f"{T_PRED}::test_the_zips_of_one_prediction_request_share_one_byte_budget"],
    ),
    removal(
        "zip-count",
        "zip: entry count",
        "the entry-count test is `if False:`",
        [Edit(ARCH, "            if len(infos) > self.max_entries:", "            if False:")],
        [
            f"{T_ARCH}::test_limits_per_entry_and_per_zip",
            f"{T_ZIP}::test_too_many_entries_rejects_the_zip",
        ],
    ),
    removal(
        "zip-encrypted",
        "zip: encrypted entries refused with a reason",
        "the encryption-flag test removed",
        [
            Edit(
                ARCH, "        if info.flag_bits & 0x1:\n            raise Refused(ENCRYPTED)\n", ""
            )
        ],
        [
            f"{T_ARCH}::test_entries_zipfile_cannot_unpack_get_a_reason",
            f"{T_ZIP}::test_entries_that_cannot_be_unpacked_are_rejected",
            f"{T_PRED}::test_every_entry_gets_an_answer_and_the_disk_holds_one_at_a_time",
        ],
    ),
    removal(
        "zip-method",
        "zip: Deflate64 / unknown methods refused with a reason",
        "the compression-method test removed",
        [
            Edit(
                ARCH,
                "        if info.compress_type not in _METHODS:\n"
                "            raise Refused(UNSUPPORTED_METHOD)\n",
                "",
            )
        ],
        [
            f"{T_ARCH}::test_entries_zipfile_cannot_unpack_get_a_reason",
            f"{T_ZIP}::test_entries_that_cannot_be_unpacked_are_rejected",
            f"{T_PRED}::test_every_entry_gets_an_answer_and_the_disk_holds_one_at_a_time",
        ],
    ),
    removal(
        "zip-crc",
        "zip: a bad CRC or damaged stream ends that entry only (no 500)",
        "_Budgeted.read no longer catches zipfile's read errors",
        [
            Edit(
                ARCH,
                "        try:\n            data = self.raw.read(size)\n"
                "        except _READ_ERRORS as exc:\n"
                "            raise Refused(ZIP_ENTRY_DAMAGED) from exc\n",
                "        data = self.raw.read(size)\n",
            )
        ],
        [
            f"{T_ARCH}::test_entries_zipfile_cannot_unpack_get_a_reason",
            f"{T_ZIP}::test_a_damaged_entry_is_rejected_and_its_neighbours_kept",
            f"{T_PRED}::test_every_entry_gets_an_answer_and_the_disk_holds_one_at_a_time",
        ],
    ),
    removal(
        "zip-overlap",
        "zip: entries sharing compressed bytes (the predict amplification)",
        "the overlap test in ZipReader._open is `if False:`",
        [
            Edit(
                ARCH,
                "            if _data_start(archive, info) + info.compress_size > end:",
                "            if False:",
            )
        ],
        [
            f"{T_ARCH}::test_entries_sharing_their_bytes_unpack_once",
            f"{T_ARCH}::test_an_entry_stretched_over_the_next_one_is_refused",
            f"{T_ZIP}::test_entries_sharing_their_bytes_are_unpacked_once",
            f"{T_PRED}::test_a_zip_of_overlapping_entries_unpacks_one_of_them",
        ],
    ),
    removal(
        "zip-entry-size",
        "zip: per-entry size from the header",
        "the declared-size test is `if False:`",
        [Edit(ARCH, "        if info.file_size > self.max_entry_bytes:", "        if False:")],
        [
            f"{T_ARCH}::test_limits_per_entry_and_per_zip",
            f"{T_ZIP}::test_an_entry_over_the_per_file_cap_is_not_unpacked",
        ],
    ),
    removal(
        "zip-slip",
        "zip: paths that leave the folder (zip slip)",
        "safe_parts lets '..' through",
        [Edit(ARCH, '    if not parts or ".." in parts:', "    if not parts:")],
        [
            f"{T_ARCH}::test_limits_per_entry_and_per_zip",
            f"{T_ZIP}::test_zip_slip_names_are_rejected_and_nothing_is_written",
            f"{T_PRED}::test_every_entry_gets_an_answer_and_the_disk_holds_one_at_a_time",
        ],
    ),
    # --- rate limits ---
    removal(
        "rate-login-ip",
        "rate limit: log-ins per address",
        "login() no longer hits login-ip",
        [
            Edit(
                ROUTER,
                "    limiter.hit(limiter.login_ip, client_address(request))\n"
                "    limiter.check(limiter.login_account",
                "    limiter.check(limiter.login_account",
            )
        ],
        [f"{T_RATE}::test_logins_from_one_address_meet_429_with_retry_after"],
    ),
    removal(
        "rate-login-account",
        "rate limit: failed log-ins per account",
        "login() no longer checks login-account",
        [Edit(ROUTER, "    limiter.check(limiter.login_account, body.email)\n", "")],
        [f"{T_RATE}::test_failed_logins_lock_the_account_not_the_others_and_unknown_emails_alike"],
    ),
    removal(
        "rate-reset-ip",
        "rate limit: password resets per address",
        "reset_password() no longer hits login-ip",
        [
            Edit(
                ROUTER,
                "    limiter.hit(limiter.login_ip, client_address(request))\n"
                "    user = service.reset_password",
                "    user = service.reset_password",
            )
        ],
        [f"{T_RATE}::test_password_resets_from_one_address_meet_429"],
    ),
    removal(
        "rate-signup-ip",
        "rate limit: sign-ups per address",
        "signup() no longer hits signup-ip",
        [Edit(ROUTER, "    limiter.hit(limiter.signup_ip, client_address(request))\n", "")],
        [f"{T_RATE}::test_signups_and_tokens_are_limited"],
    ),
    removal(
        "rate-token-account",
        "rate limit: API tokens per account",
        "create_token() no longer hits token-account for the user",
        [Edit(ROUTER, '    limiter.hit(limiter.token_account, f"user:{user.id}")\n', "")],
        [
            f"{T_RATE}::test_signups_and_tokens_are_limited",
            f"{T_RATE}::test_api_tokens_are_limited_per_account_and_per_address",
        ],
    ),
    removal(
        "rate-token-ip",
        "rate limit: API tokens per address",
        "create_token() no longer hits token-account for the address",
        [
            Edit(
                ROUTER,
                '    limiter.hit(limiter.token_account, f"ip:{client_address(request)}")\n',
                "",
            )
        ],
        [
            f"{T_RATE}::test_signups_and_tokens_are_limited",
            f"{T_RATE}::test_api_tokens_are_limited_per_account_and_per_address",
        ],
    ),
    removal(
        "rate-retry-after",
        "rate limit: 429 carries Retry-After",
        "TooManyAttempts sets no headers",
        [
            Edit(
                "backend/ratelimit.py",
                '        self.headers = {"Retry-After": str(retry_after_s)}\n',
                "",
            )
        ],
        [f"{T_RATE}::test_logins_from_one_address_meet_429_with_retry_after"],
    ),
    removal(
        "rate-redis",
        "rate limit: counts shared by every API process through Redis",
        "storage_uri() always answers memory://",
        [
            Edit(
                "backend/ratelimit.py",
                "    if settings.rate_limit_storage_url:\n"
                "        return settings.rate_limit_storage_url\n",
                '    if True:\n        return "memory://"\n',
            )
        ],
        [
            f"{T_RATE}::test_every_api_process_counts_the_same_attempts_through_redis",
            f"{T_RATE}::test_autodl_serve_limits_logins_with_its_embedded_redis",
        ],
    ),
    # --- no account enumeration ---
    removal(
        "enum-login-timing",
        "constant-time log-in for unknown emails",
        "authenticate() skips verify_password_of_nobody",
        [Edit(AUTH, "        verify_password_of_nobody(password)\n", "")],
        [f"{T_ACC}::test_logging_in_with_an_unknown_email_costs_what_a_wrong_password_costs"],
    ),
    removal(
        "enum-signup-order",
        "sign-up decides who may sign up before looking at the email",
        "sign_up() answers 409 for a taken email first",
        [
            Edit(
                AUTH,
                '    mode = signup_mode(session)\n    if mode == "closed":',
                "    if _email_taken(session, email):\n        raise EmailTaken()\n"
                '    mode = signup_mode(session)\n    if mode == "closed":',
            )
        ],
        [f"{T_ACC}::test_invitation_sign_up_does_not_tell_which_emails_have_accounts"],
    ),
    removal(
        "enum-signup-409-timing",
        "open sign-up: a 409 takes as long as a 201",
        "create_user() looks the email up before hashing",
        [
            Edit(
                AUTH,
                "    password_hash = _checked_hash(password, email)\n"
                "    if _email_taken(session, email):\n        raise EmailTaken()\n",
                "    if _email_taken(session, email):\n        raise EmailTaken()\n"
                "    password_hash = _checked_hash(password, email)\n",
            )
        ],
        [f"{T_ACC}::test_open_sign_up_with_a_taken_email_costs_what_a_new_account_costs"],
    ),
    # --- tokens expire on the server ---
    removal(
        "token-expiry",
        "tokens: expiry checked on every use",
        "use_token() ignores expires_at",
        [
            Edit(
                AUTH,
                "if row is None or row.expires_at <= now or row.user.disabled_at is not None:",
                "if row is None or row.user.disabled_at is not None:",
            )
        ],
        [
            f"{T_TOK}::test_an_idle_session_expires_as_bearer_and_as_a_replayed_cookie",
            f"{T_TOK}::test_an_api_token_past_its_lifetime_is_401",
        ],
    ),
    removal(
        "token-slide",
        "tokens: sessions slide while used",
        "use_token() no longer moves a session's expiry",
        [Edit(AUTH, "                row.expires_at = now + timedelta(seconds=max_age_s)\n", "")],
        [f"{T_TOK}::test_a_session_in_use_slides_and_its_cookie_is_renewed"],
    ),
    removal(
        "token-api-fixed",
        "tokens: API tokens keep their fixed lifetime",
        "use_token() slides every kind of token",
        [Edit(AUTH, "            if row.kind == TokenKind.SESSION:", "            if True:")],
        [f"{T_TOK}::test_api_tokens_have_a_fixed_lifetime_and_can_be_listed_and_revoked"],
    ),
    removal(
        "token-lifetime-bound",
        "tokens: lifetime 1-366 days, required",
        "TokenIn.expires_in_days gets a default and no upper bound",
        [
            Edit(
                "backend/auth/schemas.py",
                "        ge=1, le=MAX_API_TOKEN_DAYS, description=",
                "        default=30, ge=1, description=",
            )
        ],
        [f"{T_TOK}::test_api_tokens_need_an_explicit_bounded_lifetime"],
    ),
    removal(
        "token-list-own",
        "tokens: the list shows one's own live tokens",
        "list_tokens() filters neither owner nor expiry",
        [
            Edit(
                AUTH,
                "            .where(ApiToken.user_id == user.id, ApiToken.expires_at > utcnow())\n",
                "",
            )
        ],
        [
            f"{T_TOK}::test_api_tokens_have_a_fixed_lifetime_and_can_be_listed_and_revoked",
            f"{T_TOK}::test_an_api_token_past_its_lifetime_is_401",
        ],
    ),
    removal(
        "token-list-live",
        "tokens: expired tokens are not listed",
        "list_tokens() no longer filters on expiry",
        [
            Edit(
                AUTH,
                "            .where(ApiToken.user_id == user.id, ApiToken.expires_at > utcnow())\n",
                "            .where(ApiToken.user_id == user.id)\n",
            )
        ],
        [f"{T_TOK}::test_an_api_token_past_its_lifetime_is_401"],
    ),
    removal(
        "token-revoke-own",
        "tokens: only one's own can be revoked",
        "revoke_token_id() ignores the owner",
        [
            Edit(
                AUTH,
                "    if row is None or row.user_id != user.id:\n        raise TokenNotFound()",
                "    if row is None:\n        raise TokenNotFound()",
            )
        ],
        [f"{T_TOK}::test_api_tokens_have_a_fixed_lifetime_and_can_be_listed_and_revoked"],
    ),
    # --- next after log-in ---
    removal(
        "next-control-chars",
        "next: no control characters, spaces or backslashes (server)",
        "safe_next() no longer looks for them",
        [Edit("backend/pages/router.py", "        and not _UNSAFE_IN_NEXT.search(next_url)\n", "")],
        [
            "tests/pages/test_routes.py::test_login_never_redirects_off_site",
            f"{T_BROWSER}::test_logging_in_from_a_crafted_link_stays_on_this_site",
        ],
    ),
    removal(
        "next-tabs-only",
        "next: tabs and newlines (server, partial removal)",
        "the character class is only the backslash",
        [
            Edit(
                "backend/pages/router.py",
                '_UNSAFE_IN_NEXT = re.compile(r"[\\x00-\\x20\\x7f\\\\]")',
                '_UNSAFE_IN_NEXT = re.compile(r"[\\\\]")',
            )
        ],
        ["tests/pages/test_routes.py::test_login_never_redirects_off_site"],
    ),
    removal(
        "next-host",
        "next: no '//' and no host (server)",
        "safe_next() drops the '//' and netloc tests",
        [
            Edit(
                "backend/pages/router.py",
                '        and not next_url.startswith("//")\n',
                "",
            ),
            Edit("backend/pages/router.py", "        and not urlsplit(next_url).netloc\n", ""),
        ],
        ["tests/pages/test_routes.py::test_login_never_redirects_off_site"],
    ),
    removal(
        "next-script",
        "next: the login script checks the origin again",
        "sameSitePath() returns next as given",
        [
            Edit(
                "frontend/static/js/auth.js",
                "    if (url.origin === window.location.origin) return url.pathname + "
                "url.search + url.hash;",
                "    return next;",
            )
        ],
        [
            f"{T_BROWSER}::test_the_login_script_ignores_an_off_site_next_even_if_the_page_carried_one"
        ],
    ),
    # --- who may have an account ---
    removal(
        "signup-default-invite",
        "AUTODL_SIGNUP defaults to invite",
        "the default is open",
        [
            Edit(
                "backend/config.py",
                'signup: Literal["open", "invite", "closed"] = "invite"',
                'signup: Literal["open", "invite", "closed"] = "open"',
            )
        ],
        [f"{T_ACC}::test_by_default_the_first_account_is_admin_then_sign_up_needs_an_invitation"],
    ),
    removal(
        "signup-first-admin",
        "the first account becomes admin",
        "sign_up() makes nobody admin",
        [Edit(AUTH, 'is_admin=mode == "first")', "is_admin=False)")],
        [f"{T_ACC}::test_by_default_the_first_account_is_admin_then_sign_up_needs_an_invitation"],
    ),
    removal(
        "signup-closed",
        "AUTODL_SIGNUP=closed refuses even the first account",
        "signup_mode() lets the first account in when closed",
        [
            Edit(
                AUTH,
                '    if mode != "closed" and not session.scalar(',
                "    if not session.scalar(",
            )
        ],
        [f"{T_ACC}::test_closed_sign_up_refuses_even_the_first_account"],
    ),
    removal(
        "signup-invite-needed",
        "invite mode: an invitation is needed",
        "sign_up() checks invitations only when one is sent",
        [Edit(AUTH, '    if mode == "invite":', '    if mode == "invite" and invite:')],
        [f"{T_ACC}::test_by_default_the_first_account_is_admin_then_sign_up_needs_an_invitation"],
    ),
    removal(
        "signup-invite-email",
        "invitations are bound to one email",
        "the email test removed",
        [
            Edit(
                AUTH,
                "        if link.email != email:\n            raise InviteForAnotherEmail()\n",
                "",
            )
        ],
        [f"{T_ACC}::test_by_default_the_first_account_is_admin_then_sign_up_needs_an_invitation"],
    ),
    removal(
        "signup-invite-once",
        "invitations are one-time",
        "sign_up() does not mark the link used",
        [
            Edit(
                AUTH,
                "    if link is not None:\n        link.used_at = utcnow()\n"
                "        session.flush()\n",
                "",
            )
        ],
        [f"{T_ACC}::test_by_default_the_first_account_is_admin_then_sign_up_needs_an_invitation"],
    ),
    removal(
        "admin-only",
        "only admins reach the admin API and page",
        "admin_user() lets everyone through",
        [Edit("backend/admin/deps.py", "    if not user.is_admin:", "    if False:")],
        [f"{T_ACC}::test_only_admins_reach_the_admin_api_and_page"],
    ),
    removal(
        "disable-signs-out",
        "disabling signs the user out everywhere",
        "disable() revokes nothing and use_token() ignores disabled_at",
        [
            Edit(
                "backend/admin/service.py",
                "        user.disabled_at = utcnow()\n    revoke_all_tokens(session, user)\n",
                "        user.disabled_at = utcnow()\n",
            ),
            Edit(
                AUTH,
                "if row is None or row.expires_at <= now or row.user.disabled_at is not None:",
                "if row is None or row.expires_at <= now:",
            ),
        ],
        [
            f"{T_ACC}::test_a_disabled_user_is_signed_out_and_cannot_log_in",
            "tests/test_cli_admin.py::test_user_commands_make_an_admin_invite_disable_enable_and_reset",
        ],
    ),
    removal(
        "disable-revokes",
        "disabling revokes the user's tokens (one of two layers)",
        "disable() revokes nothing (use_token() still refuses disabled users)",
        [
            Edit(
                "backend/admin/service.py",
                "        user.disabled_at = utcnow()\n    revoke_all_tokens(session, user)\n",
                "        user.disabled_at = utcnow()\n",
            )
        ],
        [
            f"{T_ACC}::test_a_disabled_user_is_signed_out_and_cannot_log_in",
            "tests/test_cli_admin.py::test_user_commands_make_an_admin_invite_disable_enable_and_reset",
        ],
    ),
    removal(
        "disable-login",
        "a disabled account cannot log in",
        "authenticate() ignores disabled_at",
        [Edit(AUTH, "    if user.disabled_at is not None:\n        raise AccountDisabled()\n", "")],
        [f"{T_ACC}::test_a_disabled_user_is_signed_out_and_cannot_log_in"],
    ),
    removal(
        "reset-signs-out",
        "an admin's reset signs the user out at once",
        "admin reset() revokes nothing",
        [
            Edit(
                "backend/admin/service.py",
                "    revoke_all_tokens(session, user)\n    return issue_link(",
                "    return issue_link(",
            )
        ],
        [f"{T_ACC}::test_a_reset_link_signs_out_everywhere_and_sets_a_new_password_once"],
    ),
    removal(
        "reset-redeem-signs-out",
        "redeeming a reset link signs out sessions made meanwhile",
        "reset_password() revokes nothing",
        [
            Edit(
                AUTH,
                "    link.used_at = utcnow()\n    revoke_all_tokens(session, user)\n",
                "    link.used_at = utcnow()\n",
            )
        ],
        [f"{T_ACC}::test_a_reset_link_signs_out_everywhere_and_sets_a_new_password_once"],
    ),
    removal(
        "reset-once",
        "reset links are one-time",
        "reset_password() does not mark the link used",
        [
            Edit(
                AUTH,
                "    link.used_at = utcnow()\n    revoke_all_tokens(session, user)\n",
                "    revoke_all_tokens(session, user)\n",
            )
        ],
        [f"{T_ACC}::test_a_reset_link_signs_out_everywhere_and_sets_a_new_password_once"],
    ),
    removal(
        "cli-disable",
        "autodl user disable",
        "the CLI's disable does nothing",
        [
            Edit(
                "backend/cli.py",
                "            admin.disable(session, None, user)",
                "            pass",
            )
        ],
        [
            "tests/test_cli_admin.py::test_user_commands_make_an_admin_invite_disable_enable_and_reset"
        ],
    ),
    removal(
        "password-strength",
        "password strength (zxcvbn score >= 3)",
        "password_weakness() accepts every score",
        [
            Edit(
                "backend/auth/security.py",
                '    if result["score"] >= MIN_PASSWORD_SCORE:',
                "    if True:",
            )
        ],
        [
            f"{T_ACC}::test_easily_guessed_passwords_are_refused_in_words",
            "tests/test_cli_admin.py::test_user_commands_make_an_admin_invite_disable_enable_and_reset",
        ],
    ),
    # --- integers and types ---
    removal(
        "bounds-path",
        "ids in paths <= 2^31-1",
        "PathId has no upper bound",
        [
            Edit(
                "backend/schemas.py",
                "PathId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]",
                "PathId = Annotated[int, Path(ge=1)]",
            )
        ],
        [
            "tests/test_bounds.py::test_ids_no_row_can_have_are_422_in_paths",
            "tests/test_bounds.py::test_pages_with_ids_no_row_can_have_are_html_404",
        ],
    ),
    removal(
        "bounds-body",
        "ids in bodies <= 2^31-1",
        "RowId has no upper bound",
        [
            Edit(
                "backend/schemas.py",
                "Ge(1), Le(MAX_ROW_ID), BeforeValidator",
                "Ge(1), BeforeValidator",
            )
        ],
        ["tests/test_bounds.py::test_ids_no_row_can_have_are_422_in_bulk_bodies"],
    ),
    removal(
        "bounds-offset",
        "offset <= 2^31-1",
        "the image listing's offset has no upper bound",
        [
            Edit(
                "backend/images/schemas.py",
                "offset: int = Field(default=0, ge=0, le=MAX_ROW_ID)",
                "offset: int = Field(default=0, ge=0)",
            )
        ],
        ["tests/test_bounds.py::test_huge_offsets_are_422"],
    ),
    removal(
        "bounds-seed",
        "run seed <= 2^32-1",
        "RunOptions.seed has no upper bound",
        [
            Edit(
                "backend/runs/schemas.py",
                "seed: JsonInt = Field(default=0, ge=0, le=2**32 - 1)",
                "seed: JsonInt = Field(default=0, ge=0)",
            )
        ],
        ["tests/test_bounds.py::test_run_seed_beyond_32_bits_is_422_before_anything_is_queued"],
    ),
    removal(
        "strict-bodies",
        "strict request bodies",
        "backend.schemas.Body and RunOptions are lax",
        [
            Edit(
                "backend/schemas.py",
                "    model_config = ConfigDict(strict=True)",
                "    model_config = ConfigDict(strict=False)",
            ),
            Edit(
                "backend/runs/schemas.py",
                '    model_config = ConfigDict(extra="forbid", strict=True)\n\n    head:',
                '    model_config = ConfigDict(extra="forbid", strict=False)\n\n    head:',
            ),
        ],
        [
            "tests/test_bounds.py::test_strings_are_not_numbers_or_booleans_but_5_0_is_5",
            f"{T_API}::test_bad_signups_are_422_with_a_message",
        ],
    ),
    # --- configuration ---
    removal(
        "secret-entropy",
        "secret key >= 256 bits in production",
        "check_production() wants more than 0 bits",
        [
            Edit(
                "backend/config.py",
                "secret_key_bits(self.secret_key) < 256",
                "secret_key_bits(self.secret_key) < 0",
            )
        ],
        ["tests/test_config.py"],
    ),
    removal(
        "secret-at-start",
        "the secret key is checked when the app starts",
        "prepare_to_serve() does not call check_production()",
        [Edit("backend/migrations.py", "    settings.check_production()\n", "")],
        ["tests/test_config.py"],
    ),
    # --- labels ---
    removal(
        "label-casefold",
        "label names compared case-insensitively (409)",
        "label_key() does not casefold",
        [
            Edit(
                "backend/projects/models.py",
                'return unicodedata.normalize("NFC", '
                'unicodedata.normalize("NFC", name).casefold())',
                'return unicodedata.normalize("NFC", name)',
            )
        ],
        [
            "tests/projects/test_projects_api.py::test_labels_that_read_the_same_are_409_with_the_existing_name",
            "tests/images/test_upload.py::test_an_upload_label_that_clashes_by_case_is_409_and_stores_nothing",
            "tests/images/test_upload.py::test_zip_folders_that_clash_by_case_are_rejected_and_nfd_names_join_nfc_labels",
        ],
    ),
    removal(
        "label-nfc",
        "label names NFC-normalised",
        "label_name() keeps the form it was given",
        [
            Edit(
                "backend/projects/schemas.py",
                'name = clean_name(unicodedata.normalize("NFC", raw), "label name")',
                'name = clean_name(raw, "label name")',
            )
        ],
        [
            "tests/projects/test_projects_api.py::test_label_names_are_stored_nfc_and_a_label_may_change_its_own_case",
            "tests/images/test_upload.py::test_zip_folders_that_clash_by_case_are_rejected_and_nfd_names_join_nfc_labels",
        ],
    ),
    removal(
        "label-409",
        "a label clash is a 409 with the existing name (not the database's error)",
        "create_label() skips check_label_name_free()",
        [
            Edit(
                "backend/projects/service.py",
                "    check_label_name_free(session, project, name)\n    n = ",
                "    n = ",
            )
        ],
        [
            "tests/projects/test_projects_api.py::test_labels_that_read_the_same_are_409_with_the_existing_name"
        ],
    ),
    removal(
        "colour-fullmatch",
        "label colour: whole-string match",
        "fullmatch becomes match",
        [
            Edit(
                "backend/projects/schemas.py",
                "not _COLOR.fullmatch(value)",
                "not _COLOR.match(value)",
            )
        ],
        ["tests/projects/test_projects_api.py::test_label_colour_must_be_exactly_a_hex_colour"],
    ),
    removal(
        "colour-schema",
        "label colour: the schema's pattern is anchored",
        "COLOR_PATTERN without ^ and $",
        [
            Edit(
                "backend/projects/schemas.py",
                'COLOR_PATTERN = "^#[0-9a-fA-F]{6}$"',
                'COLOR_PATTERN = "#[0-9a-fA-F]{6}"',
            )
        ],
        [
            "tests/test_openapi.py::test_every_pattern_in_the_schema_is_anchored_like_the_servers_checks"
        ],
    ),
    removal(
        "model-card",
        "MODEL_CARD.md escapes HTML and Markdown",
        "md() returns the text as given (newlines to spaces)",
        [
            Edit(
                "worker/model_card.py",
                '    escaped = html.escape(" ".join(str(text).split()), quote=False)\n'
                '    return _MARKDOWN_SPECIAL.sub(r"\\\\\\1", escaped)',
                '    return " ".join(str(text).split())',
            )
        ],
        ["tests/worker/test_model_card.py"],
    ),
    # --- responses ---
    removal(
        "docs-csp",
        "/docs and /redoc under their own CSP",
        "_with_csp() returns no policy",
        [
            Edit(
                "backend/apidocs.py",
                '    return body, {"Content-Security-Policy": policy}',
                "    return body, {}",
            )
        ],
        [
            "tests/test_apidocs.py::test_docs_csp_allows_only_its_own_inline_script",
            f"{T_BROWSER}::test_api_docs_render_offline_under_their_csp",
        ],
    ),
    removal(
        "docs-offline",
        "/docs and /redoc from the installed assets",
        "Swagger UI's script from jsDelivr, ReDoc with Google fonts",
        [
            Edit(
                "backend/apidocs.py",
                'swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",',
                'swagger_js_url="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/'
                'swagger-ui-bundle.js",',
            ),
            Edit("backend/apidocs.py", "with_google_fonts=False", "with_google_fonts=True"),
        ],
        ["tests/test_apidocs.py::test_docs_pages_load_nothing_from_another_host"],
    ),
    removal(
        "headers-nosniff",
        "X-Content-Type-Options: nosniff on every response",
        "nosniff dropped from DEFAULT_HEADERS",
        [Edit("backend/headers.py", '    "X-Content-Type-Options": "nosniff",\n', "")],
        ["tests/test_headers.py"],
    ),
    removal(
        "headers-middleware",
        "security headers on every response",
        "SecurityHeaders not installed",
        [
            Edit(
                "backend/app.py",
                "    app.add_middleware(SecurityHeaders)  # the 413 above gets the headers too\n",
                "",
            )
        ],
        ["tests/test_headers.py"],
    ),
    removal(
        "no-echo",
        "validation errors never echo what was sent",
        "_public_errors() adds each error's input",
        [
            Edit(
                "backend/errors.py",
                '"type": e["type"]}',
                '"type": e["type"], "input": e.get("input")}',
            )
        ],
        [f"{T_API}::test_validation_errors_never_echo_the_password"],
    ),
    removal(
        "csrf",
        "cookie writes need X-CSRF-Token",
        "get_current_user() never checks it",
        [
            Edit(
                "backend/deps.py",
                "            and not csrf_matches(token, settings.secret_key, "
                "request.headers.get(CSRF_HEADER))\n",
                "            and False\n",
            )
        ],
        [f"{T_API}::test_cookie_writes_need_the_csrf_header"],
    ),
    removal(
        "csrf-bound",
        "the CSRF token is bound to the session",
        "csrf_token_for() ignores the session",
        [
            Edit(
                "backend/auth/security.py",
                "hmac.new(secret_key.encode(), session_token.encode(), hashlib.sha256)",
                'hmac.new(secret_key.encode(), b"", hashlib.sha256)',
            )
        ],
        [f"{T_API}::test_one_users_csrf_token_does_not_fit_another_session"],
    ),
    removal(
        "autoescape",
        "page templates escape names",
        "Jinja autoescape off",
        [Edit("backend/pages/router.py", "    autoescape=True,", "    autoescape=False,")],
        ["tests/pages/test_routes.py::test_names_are_escaped_in_the_html"],
    ),
    removal(
        "ownership",
        "another user's project is a 404",
        "get_project() ignores the owner",
        [
            Edit(
                "backend/projects/service.py",
                "    if project is None or project.owner_id != user.id:\n"
                "        raise ProjectNotFound()",
                "    if project is None:\n        raise ProjectNotFound()",
            )
        ],
        [
            "tests/projects/test_projects_api.py::test_another_users_project_and_labels_are_404",
            "tests/pages/test_routes.py::test_another_users_project_and_run_pages_are_not_found",
        ],
    ),
    removal(
        "ownership-images",
        "another user's image is a 404",
        "get_image() ignores the owner",
        [
            Edit(
                "backend/images/service.py",
                "        .where(Image.id == image_id, Project.owner_id == user.id)",
                "        .where(Image.id == image_id)",
            )
        ],
        ["tests/images/test_images_api.py::test_another_users_images_are_404"],
    ),
    removal(
        "ownership-runs",
        "another user's run is a 404",
        "get_run() ignores the owner",
        [
            Edit(
                "backend/runs/service.py",
                "select(Run).join(Project).where(Run.id == run_id, Project.owner_id == user.id)",
                "select(Run).join(Project).where(Run.id == run_id)",
            )
        ],
        ["tests/runs/test_runs_api.py::test_another_users_run_is_not_found"],
    ),
    removal(
        "cookie-flags",
        "the session cookie is HttpOnly and SameSite=Lax",
        "the session cookie is readable by scripts and sent cross-site",
        [
            Edit(
                "backend/auth/cookies.py",
                '        "samesite": "lax",\n',
                '        "samesite": "none",\n',
            ),
            Edit(
                "backend/auth/cookies.py",
                "response.set_cookie(SESSION_COOKIE, token, httponly=True, **common)",
                "response.set_cookie(SESSION_COOKIE, token, httponly=False, **common)",
            ),
        ],
        [f"{T_API}::test_login_returns_a_token_and_sets_the_session_cookies"],
    ),
    removal(
        "schema-cv-null",
        "the OpenAPI schema tells the truth: a head's CV score may be null",
        "HeadReport.cv_scores back to dict[str, float]",
        [
            Edit(
                "backend/runs/schemas.py",
                "    cv_scores: dict[str, float | None]\n",
                "    cv_scores: dict[str, float]\n",
            )
        ],
        [
            "tests/runs/test_runs_api.py::"
            "test_a_run_whose_head_could_not_be_cross_validated_answers_what_the_schema_says"
        ],
    ),
    # --- uploads, memory and disk ---
    removal(
        "spool-tmp",
        "multipart spooling in AUTODL_DATA_DIR/tmp",
        "the lifespan leaves tempfile.tempdir alone",
        [
            Edit(
                "backend/app.py",
                "    system_tmp, tempfile.tempdir = tempfile.tempdir, "
                "str(settings.tmp_dir.resolve())",
                "    system_tmp = tempfile.tempdir",
            )
        ],
        [f"{T_SAFE}::test_uploads_spool_into_the_data_dir_not_the_system_tmp"],
    ),
    removal(
        "quota-full",
        "quota: a full quota is 507",
        "check_quota() never refuses",
        [
            Edit(
                "backend/images/ingest.py",
                "        if quota and self.stored_bytes >= quota:",
                "        if False:",
            )
        ],
        [f"{T_SAFE}::test_a_full_storage_quota_is_507_and_a_file_past_it_is_refused"],
    ),
    removal(
        "quota-file",
        "quota: a file that would cross it is refused",
        "_fits_quota() never refuses",
        [
            Edit(
                "backend/images/ingest.py",
                "        if quota and self.stored_bytes + size > quota:",
                "        if False:",
            )
        ],
        [
            f"{T_SAFE}::test_a_full_storage_quota_is_507_and_a_file_past_it_is_refused",
            f"{T_SAFE}::test_the_files_of_one_request_fill_the_quota_as_they_are_stored",
        ],
    ),
    removal(
        "quota-per-user",
        "quota: per user",
        "_stored_bytes() counts every user's images",
        [
            Edit(
                "backend/images/ingest.py", "            .where(Project.owner_id == owner_id)\n", ""
            )
        ],
        [f"{T_SAFE}::test_a_full_storage_quota_is_507_and_a_file_past_it_is_refused"],
    ),
    removal(
        "quota-in-request",
        "quota: the files of one request count as they are stored",
        "stored_bytes is not increased per accepted file",
        [Edit("backend/images/ingest.py", "        self.stored_bytes += staged.size\n", "")],
        [f"{T_SAFE}::test_the_files_of_one_request_fill_the_quota_as_they_are_stored"],
    ),
    removal(
        "pixel-budget",
        "decoded-pixel budget per request (uploads and predictions)",
        "PixelBudget.spend never refuses",
        [
            Edit(
                "backend/images/decode.py",
                "            if width * height > self.left:",
                "            if False:",
            )
        ],
        [
            f"{T_SAFE}::test_one_request_decodes_at_most_its_pixel_budget",
            f"{T_PRED}::test_one_prediction_request_decodes_at_most_its_pixel_budget",
        ],
    ),
    removal(
        "pixel-cap",
        "pixel cap per picture from the header, before decoding",
        "read_picture() skips _check_pixels()",
        [
            Edit(
                "backend/images/decode.py",
                "                _check_pixels(image.size, max_pixels)\n",
                "",
            )
        ],
        [f"{T_SAFE}::test_a_picture_over_the_pixel_cap_is_rejected_before_decoding"],
    ),
    removal(
        "pixel-bomb-warning",
        "Pillow's decompression-bomb warning counts as an error",
        "the warning filter removed",
        [
            Edit(
                "backend/images/decode.py",
                '        warnings.simplefilter("error", PILImage.DecompressionBombWarning)\n',
                "",
            )
        ],
        [f"{T_SAFE}::test_pillow_decompression_bomb_warning_and_error_count_as_errors"],
    ),
    removal(
        "body-413",
        "413 above AUTODL_MAX_REQUEST_BYTES",
        "install_body_limit() not called",
        [Edit("backend/app.py", "    install_body_limit(app, settings.max_request_bytes)\n", "")],
        [f"{T_SAFE}::test_a_request_over_the_size_limit_is_413"],
    ),
    removal(
        "weights-pickle",
        "imported weights never unpickle code",
        "torch.load(weights_only=False)",
        [
            Edit(
                "worker/ml/weights.py",
                'torch.load(path, map_location="cpu", weights_only=True)',
                'torch.load(path, map_location="cpu", weights_only=False)',
            )
        ],
        ["tests/worker/test_weights.py::test_import_never_unpickles_code"],
    ),
    # --- many people at once ---
    removal(
        "load-pool",
        "a database connection for every API thread",
        "SQLAlchemy's default pool (5 + 10)",
        [
            Edit(
                "backend/db.py",
                "POOL_SIZE = 10\nPOOL_MAX_OVERFLOW = 54",
                "POOL_SIZE = 5\nPOOL_MAX_OVERFLOW = 10",
            )
        ],
        [
            "tests/auth/test_under_load.py::test_every_api_worker_thread_gets_a_database_connection_at_once"
        ],
    ),
    removal(
        "load-hash-slots",
        "argon2 hashes one per core at a time",
        "the semaphore admits 1000",
        [
            Edit(
                "backend/auth/security.py",
                "HASHING_SLOTS = threading.BoundedSemaphore(HASHING_SLOT_COUNT)",
                "HASHING_SLOTS = threading.BoundedSemaphore(1000)",
            )
        ],
        ["tests/auth/test_under_load.py::test_password_hashing_takes_turns_by_the_cores"],
    ),
    removal(
        "load-no-spin",
        "onnxruntime threads do not spin between predictions",
        "spinning on",
        [
            Edit(
                "backend/inference/predictor.py",
                'options.add_session_config_entry(SPIN_CONFIG, "1" if spin else "0")',
                'options.add_session_config_entry(SPIN_CONFIG, "1")',
            )
        ],
        ["tests/worker/test_export.py::test_the_predictor_never_spins_its_threads_between_runs"],
    ),
]


def verify() -> list[str]:
    """Every edit's ``old`` text occurs exactly once in its file (the code has not moved)."""
    problems = []
    for item in REMOVALS:
        for edit in item.edits:
            count = (REPO_ROOT / edit.path).read_text().count(edit.old)
            if count != 1:
                problems.append(f"{item.key}: {edit.path}: found {count} times: {edit.old!r}")
        for test in item.tests:
            path, _, name = test.partition("::")
            source = (REPO_ROOT / path).read_text()
            if name and not re.search(rf"^def {re.escape(name)}\(", source, re.M):
                problems.append(f"{item.key}: no test {test}")
    return problems


def pytest_run(tests: tuple[str, ...] | list[str], timeout_s: int, junit: Path) -> PytestRun:
    """Every test runs (no -x), so each covering test's own outcome is known."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"]
    started = time.monotonic()
    junit.unlink(missing_ok=True)
    try:
        done = subprocess.run(
            [*command, f"--junitxml={junit}", *tests],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "CI": "true"},
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"timed out after {timeout_s} s\n{exc.stdout or ''}"
    return PytestRun(code, output, time.monotonic() - started, outcomes(junit))


@dataclass(frozen=True)
class PytestRun:
    code: int
    output: str
    seconds: float
    outcomes: dict[str, str]  # test id -> passed / failed / error / skipped


def outcomes(junit: Path) -> dict[str, str]:
    if not junit.exists():
        return {}
    found = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        name = f"{module}.py::{case.get('name')}"
        kinds = {child.tag for child in case}
        found[name] = next(
            (k for k in ("failure", "error", "skipped") if k in kinds), "passed"
        ).replace("failure", "failed")
    return found


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line[:300]
    tail = [line for line in output.splitlines() if line.strip()]
    return tail[-1][:300] if tail else ""


def without(item: Removal, timeout_s: int, folder: Path) -> dict[str, object]:
    originals = {edit.path: (REPO_ROOT / edit.path).read_bytes() for edit in item.edits}
    try:
        for edit in item.edits:
            path = REPO_ROOT / edit.path
            text = path.read_text()
            assert text.count(edit.old) == 1, (item.key, edit.path)
            path.write_text(text.replace(edit.old, edit.new))
        run = pytest_run(item.tests, timeout_s, folder / f"{item.key}.xml")
    finally:
        for path, data in originals.items():
            (REPO_ROOT / path).write_bytes(data)
    assert _same_as_before(originals), f"{item.key}: not restored"
    return {
        "key": item.key,
        "protection": item.protection,
        "what": item.what,
        "tests": list(item.tests),
        "rc_without": run.code,
        "failed_without": run.code == 1,
        "outcomes_without": run.outcomes,
        "first_failure": first_failure(run.output) if run.code else "",
        "seconds": round(run.seconds, 1),
        "output_tail": run.output[-3000:],
    }


def _same_as_before(originals: dict[str, bytes]) -> bool:
    return all((REPO_ROOT / p).read_bytes() == data for p, data in originals.items())


def table(results: Path) -> str:
    """The Markdown table of docs/security.md from a run's JSON lines."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    baseline = next((r for r in rows if "baseline_rc" in r), None)
    with_outcomes: dict[str, str] = dict(baseline["outcomes"]) if baseline else {}
    lines = [
        "| protection | removed by | covering tests: without → with |",
        "|---|---|---|",
    ]
    for row in rows:
        if "key" not in row:
            continue
        cells = []
        for test in row["tests"]:
            without = _matching(row["outcomes_without"], test)
            kept = _matching(with_outcomes, test)
            short = test.removeprefix("tests/")
            cells.append(f"`{short}`: {_words(without)} → {_words(kept)}")
        lines.append(f"| {row['protection']} | {row['what']} | {'<br>'.join(cells)} |")
    return "\n".join(lines)


def _matching(found: dict[str, str], test: str) -> list[str]:
    return [v for k, v in found.items() if k == test or k.startswith((test + "[", test + "::"))]


def _words(outcomes: list[str]) -> str:
    if not outcomes:
        return "not run"
    failed = sum(o in ("failed", "error") for o in outcomes)
    if len(outcomes) == 1:
        return {"failed": "**fails**", "error": "**errors**"}.get(outcomes[0], outcomes[0])
    return f"**{failed} of {len(outcomes)} fail**" if failed else f"{len(outcomes)} passed"


def _stop(signum: int, _: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # the edits are undone in ``without``


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--verify", action="store_true")
    parser.add_argument("--only", action="append", default=[], help="keys starting with this")
    parser.add_argument("--skip", action="append", default=[], help="keys starting with this")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("/tmp/removal_checks.jsonl"))
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--table", type=Path, help="print the Markdown table of a run's results")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    problems = verify()
    if problems or args.verify:
        print("\n".join(problems) or f"all {len(REMOVALS)} removals apply")
        return 1 if problems else 0
    chosen = [
        r
        for r in REMOVALS
        if (not args.only or r.key.startswith(tuple(args.only)))
        and not r.key.startswith(tuple(args.skip or ["\0"]))
    ]
    folder = args.out.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        for item in chosen:
            result = without(item, args.timeout, folder)
            out.write(json.dumps(result) + "\n")
            out.flush()
            verdict = "FAILED without" if result["failed_without"] else f"rc={result['rc_without']}"
            per_test = " ".join(
                f"{v}"
                for v in dict(result["outcomes_without"]).values()  # type: ignore[call-overload]
            )
            print(f"{item.key}: {verdict} ({result['seconds']} s) [{per_test}]", flush=True)
        if not args.no_baseline:
            tests = sorted({t for item in chosen for t in item.tests})
            run = pytest_run(tests, args.timeout * 3, folder / "baseline.xml")
            record = {"baseline_rc": run.code, "seconds": round(run.seconds, 1)}
            out.write(json.dumps({**record, "outcomes": run.outcomes}) + "\n")
            print(f"baseline (untouched tree): {record}\n{run.output[-1500:]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
