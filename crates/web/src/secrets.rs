//! Generating and hashing secrets: API keys, Measurement Protocol secrets, measurement ids.
//! Only BLAKE3 hashes of secrets are stored; keys are high-entropy random strings, so an
//! unkeyed hash suffices (as for GitHub tokens).

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const UPPER36: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn random_from(alphabet: &[u8], n: usize) -> Result<String, String> {
    // Rejection sampling keeps the characters uniform.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).map_err(|e| format!("no OS randomness: {e}"))?;
        for b in bytes {
            if (b as usize) < limit && out.len() < n {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    Ok(out)
}

/// A new API key: `ff_` + 32 base62 characters (≈190 bits).
///
/// # Errors
/// When the OS has no randomness.
pub fn new_api_key() -> Result<String, String> {
    Ok(format!("ff_{}", random_from(BASE62, 32)?))
}

/// A new Measurement Protocol API secret: 22 base62 characters, like GA4's.
///
/// # Errors
/// When the OS has no randomness.
pub fn new_api_secret() -> Result<String, String> {
    random_from(BASE62, 22)
}

/// A new GA4-style measurement id: `G-` + 10 upper-case letters and digits.
///
/// # Errors
/// When the OS has no randomness.
pub fn new_measurement_id() -> Result<String, String> {
    Ok(format!("G-{}", random_from(UPPER36, 10)?))
}

/// The stored form of a secret: BLAKE3, hex.
pub fn hash_secret(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let k = new_api_key().unwrap();
        assert!(
            k.starts_with("ff_") && k.len() == 35 && k[3..].bytes().all(|b| BASE62.contains(&b))
        );
        let m = new_measurement_id().unwrap();
        assert!(
            m.starts_with("G-") && m.len() == 12 && m[2..].bytes().all(|b| UPPER36.contains(&b))
        );
        assert_eq!(new_api_secret().unwrap().len(), 22);
        assert_ne!(new_api_key().unwrap(), k);
        assert_eq!(
            hash_secret("abc"),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }
}
