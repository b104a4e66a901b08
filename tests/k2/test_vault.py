"""Secret vault: envelope encryption, the model field, admin display, key rotation, KMS."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import pickle
import secrets
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import FieldError, ImproperlyConfigured, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction

from k2.vault import crypto
from k2.vault.exceptions import VaultError
from k2.vault.providers import LocalKeyProvider, get_provider, reset_provider_cache
from k2.vault.secret import Secret
from tests.testapp.models import VaultSample

PLAIN = "api-secret-Zq7 ünïcode-0x5EC12E7"
OTHER_PLAIN = "totp-seed-JBSWY3DPEHPK3PXP"
KEY_A = base64.b64encode(secrets.token_bytes(32)).decode()
KEY_B = base64.b64encode(secrets.token_bytes(32)).decode()
SHORT_KEY = base64.b64encode(b"sixteen-byte-key").decode()
CONTEXT = "testapp.vaultsample.secret"


@pytest.fixture(autouse=True)
def key_a(settings):
    """Every test starts on the local provider with master key `a` active."""
    settings.K2_VAULT_PROVIDER = "local"
    settings.K2_VAULT_MASTER_KEYS = f"a:{KEY_A}"
    settings.K2_VAULT_ACTIVE_KEY_ID = "a"
    yield
    reset_provider_cache()


def _raw(pk: int, column: str = "secret") -> Any:
    """The column exactly as stored in PostgreSQL."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM testapp_vaultsample WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def _assert_no_secret_in(text: str) -> None:
    for needle in (PLAIN, OTHER_PLAIN, KEY_A, KEY_B, "k2v1$"):
        assert needle not in text


# --- The model field -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_field_round_trip_through_the_database():
    row = VaultSample.objects.create(secret=PLAIN)
    assert isinstance(row.secret, Secret)  # assignment wraps the str at once
    assert row.optional is None

    loaded = VaultSample.objects.get(pk=row.pk)
    assert isinstance(loaded.secret, Secret)
    assert loaded.secret.reveal() == PLAIN
    assert loaded.optional is None

    loaded.optional = OTHER_PLAIN
    loaded.save()
    again = VaultSample.objects.get(pk=row.pk)
    assert again.secret.reveal() == PLAIN
    assert again.optional.reveal() == OTHER_PLAIN

    again.optional = None
    again.save(update_fields=["optional"])
    assert VaultSample.objects.get(pk=row.pk).optional is None


@pytest.mark.django_db
def test_missing_secret_is_none_not_an_encrypted_empty_string():
    row = VaultSample(label="no secret")
    assert row.secret is None
    with pytest.raises(ValidationError) as excinfo:
        row.full_clean()
    assert "secret" in excinfo.value.message_dict
    assert "optional" not in excinfo.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save()
    VaultSample(secret="").save()  # an explicit empty secret is still a secret
    assert VaultSample.objects.get().secret.reveal() == ""


@pytest.mark.django_db
def test_raw_column_holds_a_versioned_token_and_no_plaintext():
    first = VaultSample.objects.create(secret=PLAIN, optional=PLAIN)
    second = VaultSample.objects.create(secret=PLAIN)

    raw = _raw(first.pk)
    assert raw.startswith("k2v1$a$")
    assert len(raw.split("$")) == 4
    assert PLAIN not in raw
    assert base64.b64encode(PLAIN.encode()).decode()[:16] not in raw
    assert crypto.key_id_of(raw) == "a"
    # Fresh data key and nonce per record: equal plaintexts give unrelated tokens.
    assert raw != _raw(second.pk)
    assert raw != _raw(first.pk, "optional")
    assert raw.split("$")[2] != _raw(second.pk).split("$")[2]


@pytest.mark.django_db
def test_loading_a_row_does_not_decrypt(settings):
    row = VaultSample.objects.create(secret=PLAIN)
    settings.K2_VAULT_MASTER_KEYS = f"b:{KEY_B}"  # key `a` gone: decrypting would fail
    settings.K2_VAULT_ACTIVE_KEY_ID = "b"

    loaded = VaultSample.objects.get(pk=row.pk)  # no error: nothing decrypted yet
    assert isinstance(loaded.secret, Secret)
    with pytest.raises(VaultError):
        loaded.secret.reveal()


@pytest.mark.django_db
def test_secret_and_instance_never_show_plaintext(caplog):
    row = VaultSample.objects.create(secret=PLAIN, optional=OTHER_PLAIN)
    loaded = VaultSample.objects.get(pk=row.pk)
    loaded.secret.reveal()  # even once revealed (plaintext cached), displays stay masked

    for obj in (row, loaded):
        texts = [
            repr(obj),
            str(obj),
            f"{obj}",
            repr(obj.__dict__),
            repr(vars(obj)),
            repr(obj.secret),
            str(obj.secret),
            f"{obj.secret}",
            f"{obj.secret!r}",
            f"{obj.secret:>40}",
            "%s %r" % (obj.secret, obj.optional),  # noqa: UP031
            "{}".format(obj.optional),  # noqa: UP032
        ]
        for text in texts:
            _assert_no_secret_in(text)
        assert "********" in repr(obj.secret)

        logging.getLogger("k2.test").warning("loaded %s %r %s", obj.secret, obj.__dict__, obj)
    assert caplog.records
    _assert_no_secret_in(caplog.text)


@pytest.mark.django_db
def test_secret_refuses_json_and_pickle():
    row = VaultSample.objects.create(secret=PLAIN)
    loaded = VaultSample.objects.get(pk=row.pk)
    for value in (row.secret, loaded.secret):
        with pytest.raises(TypeError):
            json.dumps({"secret": value})
        with pytest.raises(TypeError):
            json.dumps({"secret": value}, cls=DjangoJSONEncoder)
        with pytest.raises(TypeError):
            pickle.dumps(value)
    with pytest.raises(TypeError):
        pickle.dumps(loaded)


@pytest.mark.django_db
def test_token_copied_into_another_field_does_not_open():
    row = VaultSample.objects.create(secret=PLAIN)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE testapp_vaultsample SET optional = secret WHERE id = %s", [row.pk])
    loaded = VaultSample.objects.get(pk=row.pk)
    assert loaded.secret.reveal() == PLAIN
    with pytest.raises(VaultError) as excinfo:
        loaded.optional.reveal()
    assert "testapp.vaultsample.optional" in str(excinfo.value)
    _assert_no_secret_in(str(excinfo.value))


@pytest.mark.django_db
def test_lookups_that_would_compare_plaintext_are_refused():
    VaultSample.objects.create(secret=PLAIN)
    VaultSample.objects.create(secret=PLAIN, optional=OTHER_PLAIN)
    with pytest.raises(FieldError, match="randomised ciphertext"):
        VaultSample.objects.filter(secret=PLAIN).count()
    with pytest.raises(FieldError):
        VaultSample.objects.filter(**{"secret__startswith": "api"}).count()
    with pytest.raises(FieldError):
        VaultSample.objects.filter(**{"optional__in": [OTHER_PLAIN]}).count()
    assert VaultSample.objects.filter(optional=None).count() == 1
    assert VaultSample.objects.filter(optional__isnull=False).count() == 1
    assert VaultSample.objects.exclude(optional=None).count() == 1


@pytest.mark.django_db
def test_queryset_update_and_bulk_create_encrypt():
    rows = VaultSample.objects.bulk_create([VaultSample(secret=PLAIN), VaultSample(secret=OTHER_PLAIN)])
    VaultSample.objects.filter(pk=rows[0].pk).update(optional=OTHER_PLAIN)
    assert PLAIN not in _raw(rows[0].pk)
    assert OTHER_PLAIN not in _raw(rows[0].pk, "optional")
    loaded = VaultSample.objects.get(pk=rows[0].pk)
    assert (loaded.secret.reveal(), loaded.optional.reveal()) == (PLAIN, OTHER_PLAIN)
    assert VaultSample.objects.get(pk=rows[1].pk).secret.reveal() == OTHER_PLAIN


@pytest.mark.django_db
def test_dumpdata_writes_tokens_and_loaddata_keeps_them(tmp_path):
    row = VaultSample.objects.create(secret=PLAIN)
    out = io.StringIO()
    call_command("dumpdata", "testapp.vaultsample", stdout=out)
    dumped = out.getvalue()
    assert PLAIN not in dumped
    assert _raw(row.pk) in dumped

    fixture = tmp_path / "vault.json"
    fixture.write_text(dumped)
    VaultSample.objects.all().delete()
    call_command("loaddata", str(fixture), verbosity=0)
    assert VaultSample.objects.get(pk=row.pk).secret.reveal() == PLAIN


# --- seal / unseal / rewrap ---------------------------------------------------------------------


def _flip(token: str, part: int) -> str:
    pieces = token.split("$")
    raw = bytearray(base64.b64decode(pieces[part]))
    raw[-1] ^= 0x01
    pieces[part] = base64.b64encode(bytes(raw)).decode()
    return "$".join(pieces)


def test_seal_unseal_round_trip_and_token_shape():
    token = crypto.seal(PLAIN, context=CONTEXT)
    version, key_id, _wrapped, payload = token.split("$")
    assert (version, key_id) == ("k2v1", "a")
    assert len(base64.b64decode(payload)) == 12 + len(PLAIN.encode()) + 16  # nonce + ct + tag
    assert crypto.unseal(token, context=CONTEXT) == PLAIN
    assert crypto.unseal(crypto.seal("", context=CONTEXT), context=CONTEXT) == ""
    assert crypto.seal(PLAIN, context=CONTEXT) != token


@pytest.mark.parametrize(
    ("mangle", "context"),
    [
        pytest.param(lambda t: _flip(t, 3), CONTEXT, id="tampered-ciphertext"),
        pytest.param(lambda t: _flip(t, 2), CONTEXT, id="tampered-wrapped-key"),
        pytest.param(lambda t: t.replace("$a$", "$zz$", 1), CONTEXT, id="unknown-key-id"),
        pytest.param(lambda t: t, "testapp.vaultsample.optional", id="wrong-context"),
        pytest.param(lambda t: t.replace("k2v1", "k2v9", 1), CONTEXT, id="unknown-version"),
        pytest.param(lambda t: t[:-8], CONTEXT, id="truncated"),
        pytest.param(lambda t: PLAIN, CONTEXT, id="not-a-token"),
    ],
)
def test_bad_tokens_raise_vault_error_without_secrets(mangle, context):
    token = crypto.seal(PLAIN, context=CONTEXT)
    with pytest.raises(VaultError) as excinfo:
        crypto.unseal(mangle(token), context=context)
    rendered = "".join(traceback.format_exception(excinfo.value))
    for needle in (PLAIN, KEY_A, token.split("$")[2], token.split("$")[3]):
        assert needle not in rendered


def test_rewrap_moves_only_the_data_key(settings):
    token = crypto.seal(PLAIN, context=CONTEXT)
    assert crypto.rewrap(token, context=CONTEXT) == token  # already on the active key

    settings.K2_VAULT_MASTER_KEYS = f"a:{KEY_A},b:{KEY_B}"
    settings.K2_VAULT_ACTIVE_KEY_ID = "b"
    moved = crypto.rewrap(token, context=CONTEXT)
    assert crypto.key_id_of(moved) == "b"
    assert moved.split("$")[3] == token.split("$")[3]  # payload untouched
    assert crypto.unseal(moved, context=CONTEXT) == PLAIN
    with pytest.raises(VaultError):
        crypto.rewrap(token, context="testapp.vaultsample.optional")
    with pytest.raises(VaultError):
        crypto.rewrap(_flip(token, 3), context=CONTEXT)


# --- Local provider configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("master_keys", "active", "message"),
    [
        pytest.param(
            "a:" + base64.b64encode(b"sixteen-byte-key").decode(), "a", "exactly 32 bytes", id="short"
        ),
        pytest.param("a:not*base64!!", "a", "not valid base64", id="not-base64"),
        pytest.param(f"{KEY_A}", "a", "must look like", id="no-key-id"),
        pytest.param(f"a:{KEY_A},a:{KEY_B}", "a", "twice", id="duplicate"),
        pytest.param(f"a:{KEY_A}", "b", "not among", id="active-missing"),
        pytest.param(f"a:{KEY_A},b:{KEY_B}", "", "must be set", id="active-ambiguous"),
        pytest.param("", "", "not set", id="empty"),
    ],
)
def test_local_provider_rejects_bad_configuration_without_echoing_keys(master_keys, active, message):
    with pytest.raises(ImproperlyConfigured, match=message) as excinfo:
        LocalKeyProvider(master_keys=master_keys, active_key_id=active)
    for needle in (KEY_A, KEY_B, "not*base64", SHORT_KEY):
        assert needle not in str(excinfo.value)


def test_provider_follows_settings(settings):
    assert get_provider().active_key_id == "a"
    settings.K2_VAULT_MASTER_KEYS = f"a:{KEY_A},b:{KEY_B}"
    settings.K2_VAULT_ACTIVE_KEY_ID = "b"
    assert get_provider().active_key_id == "b"
    assert "KEY" not in repr(get_provider())
    assert KEY_A not in repr(get_provider())


# --- Rotation -----------------------------------------------------------------------------------


def _rotate(*args: str, **options: object) -> str:
    out = io.StringIO()
    call_command("rotate_master_key", *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


@pytest.mark.django_db
def test_rotation_rewraps_every_row_and_old_key_can_then_go(settings):
    rows = [VaultSample.objects.create(secret=f"{PLAIN}-{i}") for i in range(5)]
    VaultSample.objects.filter(pk=rows[0].pk).update(optional=OTHER_PLAIN)
    before = {row.pk: (_raw(row.pk), _raw(row.pk, "optional")) for row in rows}

    # Step 1-2: add key b next to a, make b active, "deploy".
    settings.K2_VAULT_MASTER_KEYS = f"a:{KEY_A},b:{KEY_B}"
    settings.K2_VAULT_ACTIVE_KEY_ID = "b"
    for i, row in enumerate(rows):  # old records still decrypt
        assert VaultSample.objects.get(pk=row.pk).secret.reveal() == f"{PLAIN}-{i}"
    fresh = VaultSample.objects.create(secret=PLAIN)  # new writes use b
    assert crypto.key_id_of(_raw(fresh.pk)) == "b"

    dry = _rotate("--dry-run")
    assert "testapp.VaultSample.secret: would re-wrap 5" in dry
    assert "testapp.VaultSample.optional: would re-wrap 1" in dry
    assert {row.pk: (_raw(row.pk), _raw(row.pk, "optional")) for row in rows} == before

    # Step 3: rotate, in batches smaller than the table.
    report = _rotate(batch_size=2)
    assert "testapp.VaultSample.secret: re-wrapped 5, failed 0, remaining 0" in report
    assert "testapp.VaultSample.optional: re-wrapped 1, failed 0, remaining 0" in report
    _assert_no_secret_in(report)
    for row in rows:
        token = _raw(row.pk)
        assert crypto.key_id_of(token) == "b"
        assert token.split("$")[3] == before[row.pk][0].split("$")[3]  # payload kept
    assert crypto.key_id_of(_raw(rows[0].pk, "optional")) == "b"

    # Idempotent: a second run finds nothing and changes nothing.
    after = {row.pk: _raw(row.pk) for row in rows}
    assert "re-wrapped 0, failed 0, remaining 0" in _rotate()
    assert {row.pk: _raw(row.pk) for row in rows} == after

    # Step 5: remove the old key; everything still decrypts.
    settings.K2_VAULT_MASTER_KEYS = f"b:{KEY_B}"
    for i, row in enumerate(rows):
        assert VaultSample.objects.get(pk=row.pk).secret.reveal() == f"{PLAIN}-{i}"
    assert VaultSample.objects.get(pk=rows[0].pk).optional.reveal() == OTHER_PLAIN
    assert VaultSample.objects.get(pk=fresh.pk).secret.reveal() == PLAIN


@pytest.mark.django_db
def test_rotation_reports_rows_it_cannot_rewrap(settings):
    good = VaultSample.objects.create(secret=PLAIN)
    bad = VaultSample.objects.create(secret=PLAIN)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE testapp_vaultsample SET secret = replace(secret, 'k2v1$a$', 'k2v1$gone$') WHERE id = %s",
            [bad.pk],
        )
    settings.K2_VAULT_MASTER_KEYS = f"a:{KEY_A},b:{KEY_B}"
    settings.K2_VAULT_ACTIVE_KEY_ID = "b"
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 value"):
        call_command("rotate_master_key", stdout=io.StringIO(), stderr=err)
    assert f"pk={bad.pk}" in err.getvalue()
    _assert_no_secret_in(err.getvalue())
    assert crypto.key_id_of(_raw(good.pk)) == "b"
    assert crypto.key_id_of(_raw(bad.pk)) == "gone"


# --- Admin ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_shows_set_or_not_set_only(admin_client):
    row = VaultSample.objects.create(label="sample-row", secret=PLAIN)
    token = _raw(row.pk)
    pages = {
        "changelist": admin_client.get("/admin/testapp/vaultsample/"),
        "search": admin_client.get("/admin/testapp/vaultsample/", {"q": "sample"}),
        "change": admin_client.get(f"/admin/testapp/vaultsample/{row.pk}/change/"),
        "add": admin_client.get("/admin/testapp/vaultsample/add/"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        html = response.content.decode()
        assert PLAIN not in html, name
        assert token.split("$")[3][:20] not in html, name
        assert "k2v1$" not in html, name
        assert "********" not in html, name
    change = pages["change"].content.decode()
    assert ">set<" in change
    assert ">not set<" in change
    assert 'name="secret"' not in change  # no form input for the secret
    assert ">set<" in pages["changelist"].content.decode()

    # Saving the change form (label only) keeps the secret as it was.
    response = admin_client.post(f"/admin/testapp/vaultsample/{row.pk}/change/", {"label": "renamed"})
    assert response.status_code == 302
    assert _raw(row.pk) == token
    assert VaultSample.objects.get(pk=row.pk).secret.reveal() == PLAIN


# --- AWS KMS (a real moto server on 127.0.0.1) --------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def kms(moto_endpoint, monkeypatch, settings):
    """Two KMS keys on the moto server; returns (client, arn1, arn2) with key 1 active."""
    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    reset_provider_cache()
    client = boto3.client("kms", region_name="us-east-1", endpoint_url=moto_endpoint)
    arn1 = client.create_key(Description="k2 vault 1")["KeyMetadata"]["Arn"]
    arn2 = client.create_key(Description="k2 vault 2")["KeyMetadata"]["Arn"]
    alias = f"alias/k2-vault-{secrets.token_hex(4)}"
    client.create_alias(AliasName=alias, TargetKeyId=arn1)
    settings.K2_VAULT_PROVIDER = "aws-kms"
    settings.K2_VAULT_MASTER_KEYS = ""
    settings.K2_VAULT_ACTIVE_KEY_ID = ""
    settings.K2_VAULT_KMS_KEY_ID = alias
    settings.K2_VAULT_KMS_ENDPOINT_URL = moto_endpoint
    settings.AWS_REGION = "us-east-1"
    yield client, arn1, arn2
    reset_provider_cache()


@pytest.mark.django_db
def test_kms_provider_round_trip_and_rotation(kms, settings):
    _client, arn1, arn2 = kms
    assert get_provider().active_key_id == arn1  # the alias resolves to the key ARN

    rows = [VaultSample.objects.create(secret=f"{PLAIN}-{i}") for i in range(3)]
    for i, row in enumerate(rows):
        token = _raw(row.pk)
        assert crypto.key_id_of(token) == arn1
        assert PLAIN not in token
        assert VaultSample.objects.get(pk=row.pk).secret.reveal() == f"{PLAIN}-{i}"

    # A token claiming another KMS key does not open (the key id is passed to Decrypt).
    forged = _raw(rows[0].pk).replace(arn1, arn2)
    with pytest.raises(VaultError):
        crypto.unseal(forged, context=CONTEXT)

    settings.K2_VAULT_KMS_KEY_ID = arn2
    assert "would re-wrap 3" in _rotate("--dry-run")
    assert "testapp.VaultSample.secret: re-wrapped 3, failed 0, remaining 0" in _rotate(batch_size=2)
    for i, row in enumerate(rows):
        token = _raw(row.pk)
        assert crypto.key_id_of(token) == arn2
        assert VaultSample.objects.get(pk=row.pk).secret.reveal() == f"{PLAIN}-{i}"
    assert "re-wrapped 0" in _rotate()

    # The data keys now open under key 2 only: claiming key 1 is refused by KMS.
    with pytest.raises(VaultError):
        crypto.unseal(_raw(rows[0].pk).replace(arn2, arn1), context=CONTEXT)


# --- Production refuses to start without vault keys ---------------------------------------------

_BASE_DIR = Path(__file__).resolve().parents[2]


def _django_setup_in_production(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    secret_key = "".join(
        secrets.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789!@#%^") for _ in range(64)
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "K2_ENV": "production",
        "K2_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "k2.settings",
        "DJANGO_SECRET_KEY": secret_key,
        "DATABASE_URL": "postgres://k2:db-Pa55word-xyz@127.0.0.1:1/k2",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DJANGO_ALLOWED_HOSTS": "k2.example.com",
        **extra,
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=_BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for needle in (secret_key, "db-Pa55word-xyz"):
        assert needle not in result.stdout + result.stderr
    return result


def test_production_refuses_to_start_without_vault_keys(tmp_path):
    result = _django_setup_in_production(tmp_path)
    assert result.returncode != 0
    assert "K2_VAULT_MASTER_KEYS" in result.stderr


def test_production_refuses_malformed_vault_keys(tmp_path):
    short = base64.b64encode(secrets.token_bytes(16)).decode()
    result = _django_setup_in_production(
        tmp_path, K2_VAULT_MASTER_KEYS=f"prod:{short}", K2_VAULT_ACTIVE_KEY_ID="prod"
    )
    assert result.returncode != 0
    assert "K2_VAULT_MASTER_KEYS" in result.stderr
    assert "32 bytes" in result.stderr
    assert short not in result.stdout + result.stderr


def test_production_starts_with_valid_vault_keys(tmp_path):
    """Control for the two tests above: the same environment plus a good key starts."""
    result = _django_setup_in_production(
        tmp_path, K2_VAULT_MASTER_KEYS=f"prod:{KEY_B}", K2_VAULT_ACTIVE_KEY_ID="prod"
    )
    assert result.returncode == 0, result.stderr[-2000:]
