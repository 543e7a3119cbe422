"""Principals, their SPIFFE URIs, the federation CA, credentials directories and `fedgate ca`."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import AlreadyExists, ConfigError, IdentityError
from gateway.identity import (
    CertificateAuthority,
    Principal,
    init_ca,
    peer_certificate,
    principal_from_certificate,
    principal_from_uri,
    profiles,
)

FED = "demo"
names = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
federations = st.from_regex(r"\A[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?\Z")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return init_ca(tmp_path_factory.mktemp("ca") / "ca", FED)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# ---- principals and URIs ----------------------------------------------------------------------------


def test_uri_shapes_of_the_three_kinds() -> None:
    assert Principal.site(FED, "alpha").uri == "spiffe://demo/site/alpha"
    assert Principal.user(FED, "panda-lm", "alice").uri == "spiffe://demo/tenant/panda-lm/user/alice"
    assert Principal.admin(FED, "root").uri == "spiffe://demo/admin/root"


@given(federation=federations, name=names, tenant=names, kind=st.sampled_from(["site", "user", "admin"]))
def test_every_valid_principal_round_trips_through_its_uri(federation: str, name: str, tenant: str, kind: str) -> None:
    principal = Principal(kind, federation, name, tenant if kind == "user" else "")
    assert principal_from_uri(principal.uri) == principal
    assert principal_from_uri(principal.uri, federation) == principal


@given(
    st.one_of(
        st.text(),
        st.builds(lambda a, b: f"spiffe://{a}/{b}", st.text(), st.text()),
        st.builds(lambda a, b: f"spiffe://demo/{a}/{b}", st.sampled_from(["site", "admin", "x"]), st.text()),
    )
)
def test_parsing_is_strict_anything_accepted_prints_back_identically(uri: str) -> None:
    try:
        principal = principal_from_uri(uri)
    except IdentityError:
        return
    assert principal.uri == uri


@pytest.mark.parametrize(
    "uri",
    [
        "https://demo/site/alpha",
        "spiffe://demo",
        "spiffe://demo/",
        "spiffe://demo/site",
        "spiffe://demo/site/",
        "spiffe://demo/site/alpha/",
        "spiffe://demo//site/alpha",
        "spiffe://demo/site/Alpha",
        "spiffe://demo/site/al_pha",
        "spiffe://demo/site/-alpha",
        "spiffe://demo/site/alpha-",
        "spiffe://demo/site/" + "a" * 64,
        "spiffe://demo/site/alpha?x=1",
        "spiffe://demo/site/alpha#frag",
        "spiffe://demo/site/al%70ha",
        "spiffe://demo:443/site/alpha",
        "spiffe://user@demo/site/alpha",
        "spiffe://Demo/site/alpha",
        "spiffe://demo/gateway",
        "spiffe://demo/robot/alpha",
        "spiffe://demo/tenant/panda-lm/user",
        "spiffe://demo/tenant/panda-lm/admin/alice",
        "spiffe://demo/tenant/user/alice",
        "spiffe://demo/site/alpha beta",
    ],
)
def test_malformed_uri_is_refused(uri: str) -> None:
    with pytest.raises(IdentityError):
        principal_from_uri(uri)


def test_uri_of_a_foreign_federation_is_refused_naming_both() -> None:
    with pytest.raises(IdentityError) as refused:
        principal_from_uri("spiffe://other-fed/site/alpha", FED)
    assert "other-fed" in refused.value.message and "'demo'" in refused.value.message
    assert refused.value.reason == "FOREIGN_FEDERATION"


@pytest.mark.parametrize(
    ("kind", "name", "tenant"),
    [("robot", "a", ""), ("site", "a", "t"), ("admin", "a", "t"), ("user", "a", ""), ("site", "A", "")],
)
def test_invalid_principal_cannot_be_constructed(kind: str, name: str, tenant: str) -> None:
    with pytest.raises(IdentityError):
        Principal(kind, FED, name, tenant)


# ---- the CA --------------------------------------------------------------------------------------------


def test_init_writes_ca_with_a_private_key_and_load_reports_the_federation(tmp_path: Path) -> None:
    created = init_ca(tmp_path / "ca", "cn-ai.example")
    assert _mode(tmp_path / "ca" / "ca-key.pem") == 0o600
    loaded = CertificateAuthority.load(tmp_path / "ca")
    assert loaded.federation == "cn-ai.example"
    assert loaded.certificate == created.certificate
    constraints = loaded.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True
    assert loaded.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "cn-ai.example"


def test_init_refuses_to_overwrite_an_existing_ca(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca", FED)
    before = (tmp_path / "ca" / "ca-key.pem").read_bytes()
    with pytest.raises(AlreadyExists, match="already holds a CA"):
        init_ca(tmp_path / "ca", FED)
    assert (tmp_path / "ca" / "ca-key.pem").read_bytes() == before


def test_init_refuses_an_invalid_federation_name(tmp_path: Path) -> None:
    with pytest.raises(IdentityError):
        init_ca(tmp_path / "ca", "Not A Name")


def test_load_of_a_missing_ca_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fedgate ca init"):
        CertificateAuthority.load(tmp_path / "nowhere")


def test_load_refuses_a_key_that_does_not_match_the_certificate(tmp_path: Path) -> None:
    init_ca(tmp_path / "a", FED)
    init_ca(tmp_path / "b", FED)
    (tmp_path / "a" / "ca-key.pem").write_bytes((tmp_path / "b" / "ca-key.pem").read_bytes())
    with pytest.raises(ConfigError, match="is not the key of"):
        CertificateAuthority.load(tmp_path / "a")


def test_issued_certificate_names_the_principal_and_parses_back_to_it(ca: CertificateAuthority, tmp_path: Path) -> None:
    alice = Principal.user(FED, "panda-lm", "alice")
    out = ca.issue(alice, tmp_path / "alice")
    assert sorted(p.name for p in out.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert _mode(out / "key.pem") == 0o600
    assert (out / "ca.pem").read_bytes() == ca.cert_pem
    cert = _cert(out / "cert.pem")
    assert principal_from_certificate((out / "cert.pem").read_bytes(), FED) == alice
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    cert.verify_directly_issued_by(ca.certificate)


def test_serial_numbers_are_random(ca: CertificateAuthority, tmp_path: Path) -> None:
    site = Principal.site(FED, "alpha")
    first = _cert(ca.issue(site, tmp_path / "one") / "cert.pem").serial_number
    second = _cert(ca.issue(site, tmp_path / "two") / "cert.pem").serial_number
    assert first != second


def test_ca_refuses_to_certify_a_principal_of_another_federation(ca: CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="other"):
        ca.issue(Principal.site("other", "alpha"), tmp_path / "x")


def test_server_certificate_carries_hosts_and_the_gateway_uri(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = ca.issue_server(tmp_path / "gw", hosts=("gw.example", "10.1.2.3", "::1"))
    cert = _cert(out / "cert.pem")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3", "::1"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://demo/gateway"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    with pytest.raises(IdentityError):  # the gateway is not a principal that may call the gateway
        principal_from_certificate((out / "cert.pem").read_bytes(), FED)


def test_validity_can_be_overridden_to_mint_expired_certificates(ca: CertificateAuthority, tmp_path: Path) -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=1)
    out = ca.issue(Principal.site(FED, "old"), tmp_path / "old", not_before=start, not_after=end)
    cert = _cert(out / "cert.pem")
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (start, end)
    future = datetime.now(UTC) + timedelta(days=30)
    cert = _cert(ca.issue(Principal.site(FED, "new"), tmp_path / "new", not_before=future) / "cert.pem")
    assert cert.not_valid_before_utc == future.replace(microsecond=0)


def _signed(ca: CertificateAuthority, sans: list[x509.GeneralName] | None) -> bytes:
    key = profiles.new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.private_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "sans",
    [
        None,
        [x509.DNSName("alpha.example")],
        [
            x509.UniformResourceIdentifier("spiffe://demo/site/alpha"),
            x509.UniformResourceIdentifier("spiffe://demo/admin/root"),
        ],
    ],
    ids=["no-san", "dns-only", "two-uris"],
)
def test_certificate_without_exactly_one_uri_san_is_refused(
    ca: CertificateAuthority, sans: list[x509.GeneralName] | None
) -> None:
    with pytest.raises(IdentityError, match=r"subjectAltName|exactly one URI"):
        principal_from_certificate(_signed(ca, sans), FED)


def test_certificate_of_a_foreign_federation_is_refused_even_when_cached(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    pem = (ca.issue(Principal.site(FED, "alpha"), tmp_path / "a") / "cert.pem").read_bytes()
    first = peer_certificate(pem, FED)
    assert peer_certificate(pem, FED) is first  # the second look-up is the cached object
    assert first.fingerprint == _cert(tmp_path / "a" / "cert.pem").fingerprint(hashes.SHA256()).hex()
    with pytest.raises(IdentityError, match="not to this federation 'elsewhere'"):
        principal_from_certificate(pem, "elsewhere")


def test_garbage_is_not_a_certificate() -> None:
    with pytest.raises(IdentityError, match="not a readable"):
        principal_from_certificate(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", FED)


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "i-claim-to-be-admin")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://demo/admin/root")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def test_csr_is_signed_for_the_given_principal_ignoring_what_it_asks_for(ca: CertificateAuthority) -> None:
    pem = ca.sign_csr(_csr(profiles.new_key()), Principal.site(FED, "beta"))
    assert principal_from_certificate(pem, FED) == Principal.site(FED, "beta")


def test_csr_with_a_weak_key_is_refused(ca: CertificateAuthority) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(IdentityError, match="too small"):
        ca.sign_csr(_csr(weak), Principal.site(FED, "beta"))
