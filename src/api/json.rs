//! The proto3 JSON mapping of the API's messages, through its embedded descriptor set.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

use super::FILE_DESCRIPTOR_SET;

pub(super) fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("the build embeds a valid descriptor set"))
}

/// A message in the proto3 JSON mapping, with proto field names.
pub fn to_json<M: prost::Message + prost::Name>(message: &M) -> serde_json::Value {
    let descriptor = pool().get_message_by_name(&M::full_name()).expect("message is in the descriptor set");
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).expect("round trip");
    let mut out = serde_json::Serializer::new(Vec::new());
    dynamic
        .serialize_with_options(&mut out, &SerializeOptions::new().use_proto_field_name(true))
        .expect("serializable");
    serde_json::from_slice(&out.into_inner()).expect("valid JSON")
}

/// Reads a message from the proto3 JSON mapping (proto or lowerCamelCase field names).
pub fn from_json<M: prost::Message + prost::Name + Default>(text: &str) -> Result<M, String> {
    let descriptor = pool().get_message_by_name(&M::full_name()).expect("message is in the descriptor set");
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    dynamic.transcode_to::<M>().map_err(|e| e.to_string())
}
