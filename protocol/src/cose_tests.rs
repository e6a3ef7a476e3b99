// The tests sign and verify through the ring backend.
#![cfg(feature = "ring")]

use super::*;

const TOPIC: &[u8] = b"scs/v1/gw-1/up/telemetry";
const PAYLOAD: &[u8] = b"\xa1\x00\x01"; // {0: 1}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn key() -> SigningKey {
    SigningKey::generate().unwrap().0
}

/// Any envelope, built field by field (for malformed and tampered variants).
fn envelope(tag: Option<u64>, protected: &[u8], kid: &[u8], payload: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    if let Some(t) = tag {
        e.tag(Tag::new(t)).unwrap();
    }
    e.array(4).unwrap().bytes(protected).unwrap();
    e.map(1).unwrap().i64(HEADER_KID).unwrap().bytes(kid).unwrap();
    e.bytes(payload).unwrap().bytes(sig).unwrap();
    e.into_writer()
}

/// An envelope with a correct signature over an arbitrary protected header.
fn signed_with_protected(k: &SigningKey, protected: &[u8], kid: &[u8], aad: &[u8], payload: &[u8]) -> Vec<u8> {
    let sig = k.sign_ed25519(&sig_structure(protected, aad, payload).unwrap());
    envelope(Some(COSE_SIGN1_TAG), protected, kid, payload, &sig)
}

fn only(kid: &'static [u8], k: VerifyingKey) -> impl Fn(&[u8]) -> Option<VerifyingKey> {
    move |asked: &[u8]| (asked == kid).then_some(k)
}

#[test]
fn round_trip() {
    let k = key();
    let bytes = sign1(&k, b"gw-1", TOPIC, PAYLOAD);
    let v = verify1(&bytes, TOPIC, only(b"gw-1", k.verifying_key())).unwrap();
    assert_eq!(v, Verified { kid: b"gw-1", payload: PAYLOAD });
    assert_eq!(peek_kid(&bytes).unwrap(), b"gw-1");
    // Layout: tag 18, array(4), bstr(3) {1: -8}, {4: h'gw-1'}.
    assert_eq!(bytes.get(..9).unwrap(), &[0xd2, 0x84, 0x43, 0xa1, 0x01, 0x27, 0xa1, 0x04, 0x44]);
    assert_eq!(bytes.len(), PAYLOAD.len() + 1 + 1 + 4 + 2 + 5 + 1 + 66);
}

#[test]
fn empty_and_largest_payloads() {
    let k = key();
    let empty = sign1(&k, KID_CLOUD, TOPIC, b"");
    assert_eq!(verify1(&empty, TOPIC, only(KID_CLOUD, k.verifying_key())).unwrap().payload, b"");

    let big = vec![0x5a; MAX_UPLINK_BYTES];
    let kid = [b'k'; MAX_KID_LEN];
    let bytes = sign1(&k, &kid, TOPIC, &big);
    assert!(bytes.len() <= MAX_SIGNED_BYTES, "overhead {} above the bound", bytes.len() - big.len());
    let v = verify1(&bytes, TOPIC, |_| Some(k.verifying_key())).unwrap();
    assert_eq!(v.payload.len(), big.len());

    let mut too_big = bytes.clone();
    too_big.resize(MAX_SIGNED_BYTES + 1, 0);
    assert!(matches!(
        verify1(&too_big, TOPIC, |_| Some(k.verifying_key())),
        Err(CoseError::TooLarge { size, limit: MAX_SIGNED_BYTES }) if size == MAX_SIGNED_BYTES + 1
    ));
}

#[test]
fn tampered_payload_refused() {
    let k = key();
    let good = sign1(&k, b"gw-1", TOPIC, b"hello world");
    let forged = envelope(Some(18), &[0xa1, 0x01, 0x27], b"gw-1", b"hello worle", &good[good.len() - 64..]);
    assert!(matches!(verify1(&forged, TOPIC, |_| Some(k.verifying_key())), Err(CoseError::BadSignature { .. })));
}

#[test]
fn tampered_protected_header_refused() {
    let k = key();
    let good = sign1(&k, b"gw-1", TOPIC, PAYLOAD);
    let sig = &good[good.len() - 64..];
    // The same header {1: -8} with a non-shortest integer: the signature covers the exact bytes.
    let forged = envelope(Some(18), &[0xa1, 0x01, 0x38, 0x07], b"gw-1", PAYLOAD, sig);
    let r = verify1(&forged, TOPIC, |_| Some(k.verifying_key()));
    assert!(matches!(r, Err(CoseError::BadSignature { .. }) | Err(CoseError::Cbor { .. })), "{r:?}");
    // An extra protected label (crit) is refused even with a valid signature over it.
    let crit = signed_with_protected(&k, &[0xa2, 0x01, 0x27, 0x02, 0x81, 0x01], b"gw-1", TOPIC, PAYLOAD);
    assert!(matches!(verify1(&crit, TOPIC, |_| Some(k.verifying_key())), Err(CoseError::Malformed { .. })));
}

#[test]
fn other_aad_refused() {
    let k = key();
    let good = sign1(&k, b"gw-1", TOPIC, PAYLOAD);
    for aad in [&b"scs/v1/gw-2/up/telemetry"[..], b"scs/v1/gw-1/up/inventory", b""] {
        assert!(matches!(verify1(&good, aad, |_| Some(k.verifying_key())), Err(CoseError::BadSignature { .. })));
    }
}

#[test]
fn tampered_signature_refused() {
    let k = key();
    let mut bytes = sign1(&k, b"gw-1", TOPIC, PAYLOAD);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert!(matches!(verify1(&bytes, TOPIC, |_| Some(k.verifying_key())), Err(CoseError::BadSignature { .. })));
}

#[test]
fn tampered_kid_refused() {
    let (k1, k2) = (key(), key());
    let good = sign1(&k1, b"gw-1", TOPIC, PAYLOAD);
    let sig = &good[good.len() - 64..];
    let keys = |kid: &[u8]| match kid {
        b"gw-1" => Some(k1.verifying_key()),
        b"gw-2" => Some(k2.verifying_key()),
        _ => None,
    };
    let as_gw2 = envelope(Some(18), &[0xa1, 0x01, 0x27], b"gw-2", PAYLOAD, sig);
    assert!(matches!(verify1(&as_gw2, TOPIC, keys), Err(CoseError::BadSignature { kid }) if kid == "gw-2"));
    let unknown = envelope(Some(18), &[0xa1, 0x01, 0x27], b"gw-9", PAYLOAD, sig);
    assert!(matches!(verify1(&unknown, TOPIC, keys), Err(CoseError::UnknownKey { kid }) if kid == "gw-9"));
    // A message signed by gw-2's key claiming gw-1 fails against gw-1's key.
    let claimed = sign1(&k2, b"gw-1", TOPIC, PAYLOAD);
    assert!(matches!(verify1(&claimed, TOPIC, keys), Err(CoseError::BadSignature { .. })));
}

#[test]
fn wrong_tag_refused() {
    let k = key();
    let good = sign1(&k, b"gw-1", TOPIC, PAYLOAD);
    let mut mac0 = good.clone();
    mac0[0] = 0xd1; // tag 17, COSE_Mac0
    assert!(matches!(verify1(&mac0, TOPIC, |_| Some(k.verifying_key())), Err(CoseError::Malformed { .. })));
    let untagged = &good[1..];
    assert!(matches!(verify1(untagged, TOPIC, |_| Some(k.verifying_key())), Err(CoseError::Cbor { at: "tag", .. })));
}

#[test]
fn other_alg_refused_even_if_signed() {
    let k = key();
    for (protected, alg) in [(&[0xa1u8, 0x01, 0x26][..], -7), (&[0xa1, 0x01, 0x05][..], 5), (&[0xa1, 0x01, 0x28][..], -9)] {
        let bytes = signed_with_protected(&k, protected, b"gw-1", TOPIC, PAYLOAD);
        let r = verify1(&bytes, TOPIC, |_| Some(k.verifying_key()));
        assert!(matches!(r, Err(CoseError::UnsupportedAlg { alg: a }) if a == alg), "{r:?}");
    }
}

#[test]
fn every_single_byte_change_and_truncation_refused() {
    let k = key();
    let good = sign1(&k, b"gw-1", TOPIC, b"\xa2\x00\x01\x01\x64gw-1");
    let keys = only(b"gw-1", k.verifying_key());
    for i in 0..good.len() {
        for mask in [0x01u8, 0x20, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= mask;
            assert!(verify1(&bad, TOPIC, &keys).is_err(), "byte {i} ^ {mask:#x} accepted");
        }
    }
    for n in 0..good.len() {
        assert!(verify1(&good[..n], TOPIC, &keys).is_err(), "truncation to {n} accepted");
        assert!(peek_kid(&good[..n]).is_err(), "peek_kid accepted truncation to {n}");
    }
}

#[test]
fn malformed_table() {
    let k = key();
    let sig = [7u8; 64];
    let p = [0xa1u8, 0x01, 0x27];
    let mut trailing = sign1(&k, b"gw-1", TOPIC, PAYLOAD);
    trailing.push(0x00);
    let mut indefinite = vec![0xd2, 0x9f];
    indefinite.extend_from_slice(&envelope(None, &p, b"gw-1", PAYLOAD, &sig)[1..]);
    indefinite.push(0xff);
    let mut payload_nil = vec![0xd2, 0x84, 0x43, 0xa1, 0x01, 0x27, 0xa1, 0x04, 0x41, b'g', 0xf6, 0x58, 0x40];
    payload_nil.extend_from_slice(&sig);
    let mut kid_text = vec![0xd2, 0x84, 0x43, 0xa1, 0x01, 0x27, 0xa1, 0x04, 0x61, b'g', 0x40, 0x58, 0x40];
    kid_text.extend_from_slice(&sig);
    let mut no_kid = vec![0xd2, 0x84, 0x43, 0xa1, 0x01, 0x27, 0xa0, 0x40, 0x58, 0x40];
    no_kid.extend_from_slice(&sig);
    let mut payload_indef = vec![0xd2, 0x84, 0x43, 0xa1, 0x01, 0x27, 0xa1, 0x04, 0x41, b'g', 0x5f, 0x41, 0x00, 0xff];
    payload_indef.extend_from_slice(&[0x58, 0x40]);
    payload_indef.extend_from_slice(&sig);
    let mut protected_map = vec![0xd2, 0x84, 0xa1, 0x01, 0x27, 0xa1, 0x04, 0x41, b'g', 0x40, 0x58, 0x40];
    protected_map.extend_from_slice(&sig);
    let long_kid = [b'k'; MAX_KID_LEN + 1];

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("not cbor", b"\xff\xff\xff".to_vec()),
        ("text", b"\x64scs!".to_vec()),
        ("bare tag", vec![0xd2]),
        ("tag of int", vec![0xd2, 0x01]),
        ("huge tag", vec![0xdb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80]),
        ("array of 3", vec![0xd2, 0x83, 0x40, 0xa0, 0x40]),
        ("array of 5", vec![0xd2, 0x85, 0x40, 0xa0, 0x40, 0x40, 0x40]),
        ("indefinite array", indefinite),
        ("huge array length", vec![0xd2, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ("huge bstr length", vec![0xd2, 0x84, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ("protected as map", protected_map),
        ("empty protected", envelope(Some(18), &[], b"gw-1", PAYLOAD, &sig)),
        ("empty protected map", envelope(Some(18), &[0xa0], b"gw-1", PAYLOAD, &sig)),
        ("protected junk", envelope(Some(18), &[0xa1, 0x01], b"gw-1", PAYLOAD, &sig)),
        ("protected trailing", envelope(Some(18), &[0xa1, 0x01, 0x27, 0x00], b"gw-1", PAYLOAD, &sig)),
        ("alg as text", envelope(Some(18), &[0xa1, 0x01, 0x65, b'E', b'd', b'D', b'S', b'A'], b"gw-1", PAYLOAD, &sig)),
        ("no kid", no_kid),
        ("kid as text", kid_text),
        ("empty kid", envelope(Some(18), &p, b"", PAYLOAD, &sig)),
        ("kid too long", envelope(Some(18), &p, &long_kid, PAYLOAD, &sig)),
        ("detached payload", payload_nil),
        ("indefinite payload", payload_indef),
        ("short signature", envelope(Some(18), &p, b"gw-1", PAYLOAD, &sig[..63])),
        ("long signature", envelope(Some(18), &p, b"gw-1", PAYLOAD, &[0u8; 65])),
        ("trailing bytes", trailing),
    ];
    for (name, bytes) in cases {
        let r = verify1(&bytes, TOPIC, |_| Some(k.verifying_key()));
        assert!(
            matches!(
                r,
                Err(CoseError::Cbor { .. }
                    | CoseError::Malformed { .. }
                    | CoseError::BadKid { .. }
                    | CoseError::UnsupportedAlg { .. })
            ),
            "{name}: {r:?}"
        );
        // The error text names the problem (for logs) and never panics on formatting.
        assert!(!r.unwrap_err().to_string().is_empty());
    }
}

#[test]
fn keys() {
    assert!(matches!(SigningKey::from_pkcs8(b"not a key"), Err(CoseError::KeyRejected { .. })));
    assert!(matches!(VerifyingKey::from_slice(&[0; 31]), Err(CoseError::BadPublicKey { len: 31 })));
    let (k, pkcs8) = SigningKey::generate().unwrap();
    let again = SigningKey::from_pkcs8(&pkcs8).unwrap();
    assert_eq!(k.public_key(), again.public_key());
    assert_eq!(VerifyingKey::from_slice(&k.public_key()).unwrap(), k.verifying_key());
    // Debug shows the public key only.
    let dbg = format!("{k:?}");
    let seed_hex: String = pkcs8[16..48].iter().map(|b| format!("{b:02x}")).collect();
    assert!(!dbg.contains(&seed_hex), "{dbg}");
}

/// RFC 8032, section 7.1, TEST 1 (empty message), through our key and backend API.
#[test]
fn rfc8032_test_vector_1() {
    let seed: [u8; 32] = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").try_into().unwrap();
    let public = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    let sig = hex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    );
    let k = SigningKey::from_seed(&seed).unwrap();
    assert_eq!(k.public_key().as_slice(), public.as_slice());
    assert_eq!(k.sign_ed25519(b"").as_slice(), sig.as_slice());
    let vk = VerifyingKey::from_slice(&public).unwrap();
    let sig64: [u8; 64] = sig.clone().try_into().unwrap();
    assert!(RingVerifier.verify_ed25519(&vk, b"", &sig64));
    let mut bad = sig64;
    bad[0] ^= 1;
    assert!(!RingVerifier.verify_ed25519(&vk, b"", &bad));
    // And an envelope by that key verifies under the published public key.
    let bytes = sign1(&k, KID_CLOUD, b"scs/v1/gw-1/down/command", PAYLOAD);
    assert!(verify1(&bytes, b"scs/v1/gw-1/down/command", |_| Some(vk)).is_ok());
}

/// A custom backend plugs in through the traits (here: ring behind a wrapper that counts calls).
#[test]
fn pluggable_backend() {
    struct Counting(std::cell::Cell<u32>);
    impl Verifier for Counting {
        fn verify_ed25519(&self, key: &VerifyingKey, msg: &[u8], signature: &[u8; 64]) -> bool {
            self.0.set(self.0.get() + 1);
            RingVerifier.verify_ed25519(key, msg, signature)
        }
    }
    let k = key();
    let bytes = sign1_with(&k, b"gw-1", TOPIC, PAYLOAD);
    let c = Counting(std::cell::Cell::new(0));
    assert!(verify1_with(&c, &bytes, TOPIC, |_| Some(k.verifying_key())).is_ok());
    assert_eq!(c.0.get(), 1);
}

mod independent {
    //! The `coset` crate (its own CBOR stack, ciborium) reads our envelopes and computes the
    //! Sig_structure itself; ring checks the signature over its bytes. And the reverse: an envelope built
    //! by coset verifies with ours.
    use coset::{iana, CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
    use ring::signature::{UnparsedPublicKey, ED25519};

    use super::*;

    #[test]
    fn coset_reads_and_verifies_ours() {
        let k = key();
        let bytes = sign1(&k, b"gw-1", TOPIC, PAYLOAD);
        let msg = CoseSign1::from_tagged_slice(&bytes).unwrap();
        assert_eq!(msg.protected.header.alg, Some(coset::RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA)));
        assert_eq!(msg.unprotected.key_id, b"gw-1".to_vec());
        assert_eq!(msg.payload.as_deref(), Some(PAYLOAD));
        let public = k.public_key();
        msg.verify_signature(TOPIC, |sig, tbs| UnparsedPublicKey::new(&ED25519, &public).verify(tbs, sig))
            .expect("coset's Sig_structure verifies");
        assert_eq!(msg.tbs_data(TOPIC), sig_structure(&[0xa1, 0x01, 0x27], TOPIC, PAYLOAD).unwrap());
        // With another aad, coset's check fails too.
        assert!(msg
            .verify_signature(b"scs/v1/gw-2/up/telemetry", |sig, tbs| UnparsedPublicKey::new(&ED25519, &public).verify(tbs, sig))
            .is_err());
        // Untagged re-serialisation by coset is our message minus the tag.
        assert_eq!(msg.to_vec().unwrap(), bytes[1..].to_vec());
    }

    #[test]
    fn ours_verifies_coset_built() {
        let k = key();
        let msg = CoseSign1Builder::new()
            .protected(HeaderBuilder::new().algorithm(iana::Algorithm::EdDSA).build())
            .unprotected(HeaderBuilder::new().key_id(KID_CLOUD.to_vec()).build())
            .payload(PAYLOAD.to_vec())
            .create_signature(b"scs/v1/gw-1/down/command", |tbs| k.sign_ed25519(tbs).to_vec())
            .build();
        let bytes = msg.to_tagged_vec().unwrap();
        let v = verify1(&bytes, b"scs/v1/gw-1/down/command", only(KID_CLOUD, k.verifying_key())).unwrap();
        assert_eq!(v, Verified { kid: KID_CLOUD, payload: PAYLOAD });
        assert_eq!(bytes, sign1(&k, KID_CLOUD, b"scs/v1/gw-1/down/command", PAYLOAD));
    }
}
