//! VregLink on D-Bus: `GetVreg` / `SetVreg` on `/Devices/0/VregLink`, carried to the device
//! as one Modbus FC23 through the bus's command queue.
//!
//! As upstream (`vreglink.py`), a device whose profile declares a VregLink block gets the item
//! `/Devices/0/VregLink` (value invalid) with the extra interface `com.victronenergy.VregLink`
//! (`GetVreg(q) -> (q, ay)`, `SetVreg(q, ay) -> (q, ay)`), and beside it `/Devices/0/{DeviceInstance,
//! ProductId, ProductName, ServiceName, CustomName, FirmwareVersion, Serial}` (the D-Bus API
//! page's list; `CustomName`, `FirmwareVersion` and `Serial` follow the top-level paths).
//!
//! A call is answered from a spawned task ([`crate::dbus::CallHook::defer`]), so waiting for
//! the bus never blocks this service's dispatcher or any other service. Answers that need no
//! device come at once, with no Modbus traffic: SetVreg data longer than the block carries
//! (0x8104), any call while the device is not answering (0x8000 / 0x8100). A failed exchange
//! (timeout, exception, id echo mismatch) answers the op's unknown error, as upstream does.
//!
//! Writes of paths the profile routes through VregLink (`/CustomName` -> VREG 0x010C,
//! `/N2kSystemInstance` -> 0x0112 on the Victron meters) go to the device with
//! [`VregPort::set_path`] instead of to settings or a register write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dmc_core::pdu::{Response, MAX_PDU_LEN};
use dmc_core::profile::Profile;
use dmc_core::vreglink::{VregEncoding, VregLink, VregReply, VregRequest, VregSupport, VregValue};
use zbus::fdo;
use zbus::message::Message;

use crate::dbus::introspect::{introspect_xml, ObjectKind};
use crate::dbus::service::{error_reply, method_return};
use crate::dbus::{
    CallHook, CallTarget, DeferredReply, Item, ItemTree, ItemValue, Service, ServiceBuilder, ValueKind,
};
use crate::engine::bus::Command;

/// The VregLink interface.
pub const INTERFACE: &str = "com.victronenergy.VregLink";
/// The object carrying it.
pub const PATH: &str = "/Devices/0/VregLink";
/// The device entry the VregLink belongs to.
pub const DEVICE: &str = "/Devices/0";
/// Top-level paths copied under [`DEVICE`] and kept equal to them.
pub const MIRRORED: [&str; 3] = ["/CustomName", "/FirmwareVersion", "/Serial"];

const INTERFACE_XML: &str = r#"  <interface name="com.victronenergy.VregLink">
    <method name="GetVreg"><arg direction="in" type="q"/><arg direction="out" type="q"/><arg direction="out" type="ay"/></method>
    <method name="SetVreg"><arg direction="in" type="q"/><arg direction="in" type="ay"/><arg direction="out" type="q"/><arg direction="out" type="ay"/></method>
  </interface>
"#;

/// Where one device's VregLink exchanges go: its block, its index on the bus, the bus's
/// command queue, and whether the device is answering.
#[derive(Clone)]
pub struct VregPort {
    support: VregSupport,
    device: usize,
    commands: async_channel::Sender<Command>,
    online: Arc<AtomicBool>,
}

impl VregPort {
    /// A port for device `device` of the bus behind `commands`; `online` is kept by the publisher.
    pub fn new(
        support: VregSupport,
        device: usize,
        commands: async_channel::Sender<Command>,
        online: Arc<AtomicBool>,
    ) -> Self {
        VregPort { support, device, commands, online }
    }

    /// The block.
    pub fn link(&self) -> VregLink {
        self.support.link
    }

    /// GetVreg `id`.
    pub async fn get(&self, id: u16) -> VregReply {
        match self.support.link.get(id) {
            Ok(request) => self.exchange(&request).await,
            Err(status) => status_only(status),
        }
    }

    /// SetVreg `id` to `data`; oversized data answers 0x8104 without touching the bus.
    pub async fn set(&self, id: u16, data: &[u8]) -> VregReply {
        match self.support.link.set(id, data) {
            Ok(request) => self.exchange(&request).await,
            Err(status) => status_only(status),
        }
    }

    /// A D-Bus write of `value` to `path`: `None` when the profile does not route `path`
    /// through VregLink, else whether the device accepted it.
    pub async fn set_path(&self, path: &str, value: &ItemValue) -> Option<bool> {
        let vreg_value = match value {
            ItemValue::Text(t) => VregValue::Text(t),
            ItemValue::Double(d) => VregValue::Number(*d),
            ItemValue::Int(i) => VregValue::Number(f64::from(*i)),
            ItemValue::Int64(i) => VregValue::Number(*i as f64),
            _ => VregValue::Text(""),
        };
        let request = match self.support.set_request(path, vreg_value)? {
            Ok(request) => request,
            Err(status) => {
                log::info!("{path}: not sent through VregLink ({status:#06x})");
                return Some(false);
            }
        };
        let reply = self.exchange(&request).await;
        if !reply.is_success() {
            log::warn!("{path}: SetVreg {:#06x} answered {:#06x}", request.id(), reply.status);
        }
        Some(reply.is_success())
    }

    /// One exchange through the command queue; the op's unknown error when the device is not
    /// answering (without queueing) or the exchange fails.
    pub async fn exchange(&self, request: &VregRequest) -> VregReply {
        if !self.online.load(Ordering::Relaxed) {
            return request.failure();
        }
        let fc23 = request.request();
        let mut pdu = [0u8; MAX_PDU_LEN];
        let Ok(len) = fc23.emit(&mut pdu) else { return request.failure() };
        let (reply_tx, reply_rx) = async_channel::bounded(1);
        let command = Command { device: self.device, pdu: pdu[..len].to_vec(), reply: reply_tx };
        if self.commands.send(command).await.is_err() {
            return request.failure();
        }
        let answer = match reply_rx.recv().await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                log::warn!("VregLink {:#06x}: {e:?}", request.id());
                return request.failure();
            }
            Err(_) => return request.failure(),
        };
        match Response::parse(&fc23, &answer) {
            Ok(Ok(Response::ReadWriteMultipleRegisters(words))) => match request.parse_reply(words) {
                Ok(reply) => {
                    if reply.truncated {
                        log::warn!(
                            "VregLink {:#06x}: data truncated to {} bytes",
                            request.id(),
                            reply.data.len()
                        );
                    }
                    reply
                }
                Err(e) => {
                    log::warn!("{e}");
                    request.failure()
                }
            },
            _ => request.failure(),
        }
    }
}

fn status_only(status: u16) -> VregReply {
    VregReply { status, data: Default::default(), truncated: false }
}

/// The call hook answering the VregLink interface on [`PATH`].
pub struct VregHook {
    port: VregPort,
}

impl VregHook {
    /// A hook serving `port`.
    pub fn new(port: VregPort) -> Self {
        VregHook { port }
    }
}

/// What a VregLink call asks for, or why it cannot be served.
enum VregCall {
    Get(u16),
    Set(u16, Vec<u8>),
}

fn parse_call(call: &Message, member: &str) -> Result<VregCall, fdo::Error> {
    let body = call.body();
    // zbus checks the body's signature against the type asked for.
    let parsed = match member {
        "GetVreg" => body.deserialize::<u16>().map(VregCall::Get),
        "SetVreg" => body.deserialize::<(u16, Vec<u8>)>().map(|(id, data)| VregCall::Set(id, data)),
        _ => return Err(fdo::Error::UnknownMethod(format!("no method {INTERFACE}.{member} on {PATH}"))),
    };
    parsed.map_err(|_| {
        let want = if member == "GetVreg" { "q" } else { "qay" };
        fdo::Error::InvalidArgs(format!("{member} takes ({want}), got {}", body.signature()))
    })
}

impl CallHook for VregHook {
    fn defer(&self, _tree: &ItemTree, call: &Message, target: CallTarget<'_>) -> Option<DeferredReply> {
        let ours = target.path == PATH
            && matches!(target.interface, Some(INTERFACE) | None)
            && matches!(target.member, "GetVreg" | "SetVreg");
        if !ours {
            return None;
        }
        let call = call.clone();
        let port = self.port.clone();
        let parsed = parse_call(&call, target.member);
        Some(Box::pin(async move {
            let reply = match parsed {
                Ok(VregCall::Get(id)) => port.get(id).await,
                Ok(VregCall::Set(id, data)) => port.set(id, &data).await,
                Err(e) => return error_reply(&call, e).into_iter().collect(),
            };
            method_return(&call, &(reply.status, reply.data.to_vec())).into_iter().collect()
        }))
    }

    fn handle(&self, _tree: &ItemTree, call: &Message, target: CallTarget<'_>) -> Option<Vec<Message>> {
        let introspect =
            target.interface == Some("org.freedesktop.DBus.Introspectable") && target.member == "Introspect";
        if target.path == PATH && introspect {
            let xml = introspect_xml(ObjectKind::Leaf, std::iter::empty(), INTERFACE_XML);
            return Some(method_return(call, &xml).into_iter().collect());
        }
        if target.path == PATH && target.interface == Some(INTERFACE) {
            let e = fdo::Error::UnknownMethod(format!("no method {INTERFACE}.{} on {PATH}", target.member));
            return Some(error_reply(call, e).into_iter().collect());
        }
        None
    }
}

/// Identity of the device for its `/Devices/0` entry.
pub struct DeviceEntry<'a> {
    /// `/DeviceInstance`.
    pub instance: i32,
    /// The service's bus name.
    pub service_name: &'a str,
    /// The profile.
    pub profile: &'static Profile,
}

/// Adds `/Devices/0/...` (copies of the top-level identity paths already in `builder`, and the
/// VregLink item) and installs the hook. Call after every top-level path is added.
pub fn add_device_entry(builder: &mut ServiceBuilder, entry: &DeviceEntry<'_>, port: VregPort) {
    let top = |path: &str| builder.item(path).unwrap_or_else(|| Item::new(ItemValue::Invalid));
    let items = [
        ("DeviceInstance", Item::new(entry.instance)),
        ("ProductId", Item::new(i32::from(entry.profile.product_id))),
        ("ProductName", Item::new(entry.profile.product_name)),
        ("ServiceName", Item::new(entry.service_name)),
        ("CustomName", read_only(top("/CustomName"))),
        ("FirmwareVersion", read_only(top("/FirmwareVersion"))),
        ("Serial", read_only(top("/Serial"))),
        ("VregLink", Item::new(ItemValue::Invalid)),
    ];
    for (name, item) in items {
        if let Err(e) = builder.add(&format!("{DEVICE}/{name}"), item) {
            log::warn!("{e}");
        }
    }
    builder.hook(Arc::new(VregHook::new(port)));
}

/// The same value and text, not writable (the `/Devices/0` copies only show).
fn read_only(item: Item) -> Item {
    let text = item.text("");
    Item::new(item.value().clone()).with_text(text)
}

/// Keeps `/Devices/0<path>` equal to `path` after an update (no-op for other paths, or when
/// the service has no device entry).
pub fn mirror(service: &Service, path: &str, value: &ItemValue, text: &str) {
    if MIRRORED.contains(&path) {
        let _ = service.set(&format!("{DEVICE}{path}"), value.clone(), text);
    }
}

/// `item` made writable with the right declared type when the profile routes `path` through
/// VregLink (the register behind it stays read-only; the next poll shows the result).
pub fn routed_item(profile: &Profile, path: &str, item: Item) -> Item {
    match profile.vreglink.and_then(|v| v.write_for(path)) {
        Some(route) => item.writable().with_kind(match route.encoding {
            VregEncoding::Utf8 => ValueKind::Text,
            VregEncoding::U8 => ValueKind::Int,
        }),
        None => item,
    }
}
