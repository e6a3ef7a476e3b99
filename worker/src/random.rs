//! wasm glue: random bytes from the platform's CSPRNG (`crypto.getRandomValues`), for the ids the cloud
//! mints (commands, artifacts). A leaf: the routes and the Durable Objects both use it.

use crate::http::ApiError;

/// Fills `buf` from `crypto.getRandomValues`.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), ApiError> {
    use worker::js_sys::{global, Function, Reflect, Uint8Array};
    use worker::wasm_bindgen::JsCast;
    let fail = |_| ApiError::internal("crypto.getRandomValues is unavailable");
    let crypto = Reflect::get(&global(), &"crypto".into()).map_err(fail)?;
    let f: Function = Reflect::get(&crypto, &"getRandomValues".into())
        .map_err(fail)?
        .dyn_into()
        .map_err(|_| fail(worker::wasm_bindgen::JsValue::NULL))?;
    let arr = Uint8Array::new_with_length(u32::try_from(buf.len()).map_err(|_| ApiError::internal("random buffer too long"))?);
    f.call1(&crypto, &arr).map_err(fail)?;
    arr.copy_to(buf);
    Ok(())
}
