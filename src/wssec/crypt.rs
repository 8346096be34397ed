//! XML Encryption of an answer's Body: a fresh AES key for the content, transported in an
//! `EncryptedKey` with RSA-OAEP (MGF1 with SHA-1, `rsa-oaep-mgf1p`) to the recipient's
//! certificate. The RSA work is aws-lc's; the block ciphers (with XML-Enc's padding) bergshamra's.

use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OaepPublicEncryptingKey, PublicEncryptingKey};
use bergshamra::core::algorithm;
use bergshamra::crypto::cipher;

use super::{Certificate, Credentials, WssError};

/// Content encryption accepted in an answer; the simulator writes the first.
pub(super) const CONTENT_CIPHERS: [&str; 4] =
    [algorithm::AES256_CBC, algorithm::AES128_CBC, algorithm::AES256_GCM, algorithm::AES128_GCM];
pub(super) const KEY_TRANSPORT: &str = algorithm::RSA_OAEP;

/// Encrypt `plaintext` under a fresh key: (key, IV + ciphertext [+ tag]).
pub(super) fn seal(plaintext: &[u8], cipher_uri: &str) -> Result<(Vec<u8>, Vec<u8>), WssError> {
    let cipher = cipher::from_uri(cipher_uri).map_err(|e| WssError::failed(format!("cipher {cipher_uri}: {e}")))?;
    let mut key = vec![0u8; cipher.key_size()];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| WssError::failed("no random key could be made"))?;
    let sealed = cipher.encrypt(&key, plaintext).map_err(|e| WssError::failed(format!("encryption failed: {e}")))?;
    Ok((key, sealed))
}

/// Encrypt a content key to `recipient`'s public key.
pub(super) fn wrap_key(key: &[u8], recipient: &Certificate) -> Result<Vec<u8>, WssError> {
    let public = PublicEncryptingKey::from_der(&recipient.spki)
        .ok()
        .and_then(|key| OaepPublicEncryptingKey::new(key).ok())
        .ok_or_else(|| WssError::failed("the recipient's certificate has no usable RSA key"))?;
    let mut wrapped = vec![0u8; public.ciphertext_size()];
    let written = public
        .encrypt(&OAEP_SHA1_MGF1SHA1, key, &mut wrapped, None)
        .map_err(|_| WssError::failed("the content key cannot be encrypted"))?
        .len();
    wrapped.truncate(written);
    Ok(wrapped)
}

/// Decrypt a transported content key with our private key; it must fit `cipher_uri`.
pub(super) fn unwrap_key(encrypted: &[u8], ours: &Credentials, cipher_uri: &str) -> Result<Vec<u8>, WssError> {
    let mut key = vec![0u8; ours.decrypter.min_output_size()];
    let length = ours
        .decrypter
        .decrypt(&OAEP_SHA1_MGF1SHA1, encrypted, &mut key, None)
        .map_err(|_| WssError::failed("the answer's content key does not decrypt with our key"))?
        .len();
    key.truncate(length);
    let cipher = cipher::from_uri(cipher_uri).map_err(|e| WssError::failed(format!("cipher {cipher_uri}: {e}")))?;
    if key.len() != cipher.key_size() {
        return Err(WssError::failed(format!(
            "the content key has {} bytes; {cipher_uri} takes {}",
            key.len(),
            cipher.key_size()
        )));
    }
    Ok(key)
}

/// Decrypt IV + ciphertext [+ tag] with `key`.
pub(super) fn open(key: &[u8], cipher_uri: &str, sealed: &[u8]) -> Result<Vec<u8>, WssError> {
    let cipher = cipher::from_uri(cipher_uri).map_err(|e| WssError::failed(format!("cipher {cipher_uri}: {e}")))?;
    cipher.decrypt(key, sealed).map_err(|_| WssError::failed("the answer's Body does not decrypt"))
}
