//! Generating and hashing secrets: API keys, Measurement Protocol secrets, measurement ids.
//! Only BLAKE3 hashes of secrets are stored; keys are high-entropy random strings, so an
//! unkeyed hash suffices (as for GitHub tokens).

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const UPPER36: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn random_from(alphabet: &[u8], n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n * 2];
    getrandom::fill(&mut bytes).map_err(|e| format!("no OS randomness: {e}"))?;
    // Rejection sampling keeps the characters uniform.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(n);
    let mut pool = bytes.into_iter();
    while out.len() < n {
        let b = match pool.next() {
            Some(b) => b,
            None => {
                let mut more = [0u8; 64];
                getrandom::fill(&mut more).map_err(|e| format!("no OS randomness: {e}"))?;
                pool = more.to_vec().into_iter();
                continue;
            }
        };
        if (b as usize) < limit {
            out.push(alphabet[b as usize % alphabet.len()] as char);
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
