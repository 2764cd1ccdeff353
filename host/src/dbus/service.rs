//! One Victron BusItem service: item tree, method dispatcher, batched `ItemsChanged`.
//!
//! A service owns one private connection (signals are attributed by sender unique name, and each
//! service has its own `/`). The dispatcher reads a `MessageStream` created *before*
//! `RequestName`, so no early call is lost, and answers with hand-built replies: tree nodes are
//! implicit (`/Ac/L1/Power` makes `/Ac` and `/Ac/L1` exist) and cost nothing per path.
//!
//! Publishing is the velib `ServiceContext` model upstream uses for all Modbus data: the engine
//! sets values and texts, then [`Service::flush`] emits one `ItemsChanged` on `/` with only what
//! changed. A remote `SetValue` follows vedbus' order (read-only → 1, not convertible → 1, equal
//! → 0 without side effects, owner verdict → 0 / 2) and never blocks the dispatcher: the owner's
//! answer is awaited in a spawned task.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use async_executor::Task;
use futures_lite::StreamExt;
use zbus::fdo;
use zbus::message::{Message, Type as MessageType};
use zbus::zvariant::{Dict, Value};
use zbus::{Connection, DBusError, MessageStream};

use super::bus::{connect, BusChoice, BusConnection, Spawner};
use super::introspect::{introspect_xml, ObjectKind};
use super::item::{ItemValue, ValueKind};
use super::{check_path, Error, BUSITEM};

const FLAG_WRITABLE: u8 = 1;
const FLAG_REFRESH: u8 = 2;
const FLAG_DIRTY: u8 = 4;

/// One published value with its text and attributes.
#[derive(Debug, Clone)]
pub struct Item {
    value: ItemValue,
    /// `None`: the default text of the value (vedbus without a text callback).
    text: Option<String>,
    kind: ValueKind,
    flags: u8,
    description: Option<Box<str>>,
}

impl Item {
    /// A read-only item whose declared type is that of `value` (invalid: any type).
    pub fn new(value: impl Into<ItemValue>) -> Item {
        let value = value.into();
        Item { kind: value.kind(), value, text: None, flags: 0, description: None }
    }

    /// Remote `SetValue` is allowed (vedbus `writeable=True`).
    pub fn writable(mut self) -> Item {
        self.flags |= FLAG_WRITABLE;
        self
    }

    /// Writable, and every write goes to the owner even when it equals the current value
    /// (`/Ac/PowerLimit`: a repeated limit is a keep-alive for the device).
    pub fn refresh_on_write(mut self) -> Item {
        self.flags |= FLAG_WRITABLE | FLAG_REFRESH;
        self
    }

    /// Sets the display text (otherwise the default text of the value is used).
    pub fn with_text(mut self, text: impl Into<String>) -> Item {
        self.text = Some(text.into());
        self
    }

    /// Declares the type remote writes are coerced to (needed when the initial value is invalid).
    pub fn with_kind(mut self, kind: ValueKind) -> Item {
        self.kind = kind;
        self
    }

    /// The `GetDescription` answer.
    pub fn with_description(mut self, description: impl Into<String>) -> Item {
        self.description = Some(description.into().into_boxed_str());
        self
    }

    /// The current value.
    pub fn value(&self) -> &ItemValue {
        &self.value
    }

    /// The declared type.
    pub fn kind(&self) -> ValueKind {
        self.kind
    }

    /// Whether remote writes are allowed.
    pub fn is_writable(&self) -> bool {
        self.flags & FLAG_WRITABLE != 0
    }

    /// The text `GetText` answers for this item at `path` (vedbus §1.5 defaults).
    pub fn text(&self, path: &str) -> String {
        match (&self.text, &self.value) {
            (Some(text), _) => text.clone(),
            (None, ItemValue::Int(id)) if path == "/ProductId" => format!("0x{id:X}"),
            (None, value) => value.default_text(),
        }
    }

    fn is_dirty(&self) -> bool {
        self.flags & FLAG_DIRTY != 0
    }
}

/// The item store of one service, shared by the dispatcher, the publisher and hooks.
#[derive(Default)]
pub struct ItemTree {
    inner: Mutex<TreeInner>,
}

#[derive(Default)]
struct TreeInner {
    items: BTreeMap<String, Item>,
    /// Paths removed since the last flush: announced once as invalid.
    removed: Vec<String>,
}

/// A `{'Value': v, 'Text': s}` entry as in GetItems / ItemsChanged / PropertiesChanged.
pub type Entry = BTreeMap<&'static str, Value<'static>>;

fn entry(path: &str, item: &Item) -> Entry {
    let mut e = Entry::new();
    e.insert("Value", item.value.to_dbus());
    e.insert("Text", Value::from(item.text(path)));
    e
}

fn invalid_entry() -> Entry {
    entry("", &Item::new(ItemValue::Invalid))
}

impl ItemTree {
    fn lock(&self) -> MutexGuard<'_, TreeInner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the item at `path`.
    pub fn get(&self, path: &str) -> Option<Item> {
        self.lock().items.get(path).cloned()
    }

    /// Runs `f` on the item at `path` (without marking it changed).
    pub fn with_item<R>(&self, path: &str, f: impl FnOnce(&mut Item) -> R) -> Option<R> {
        self.lock().items.get_mut(path).map(f)
    }

    /// Adds or replaces an item; it is announced in the next flush.
    pub fn insert(&self, path: &str, mut item: Item) -> Result<(), Error> {
        check_path(path)?;
        item.flags |= FLAG_DIRTY;
        let mut inner = self.lock();
        inner.removed.retain(|p| p != path);
        inner.items.insert(path.to_owned(), item);
        Ok(())
    }

    /// Sets value and text (`None` = default text). Returns whether anything changed.
    pub fn set(&self, path: &str, value: ItemValue, text: Option<String>) -> Result<bool, Error> {
        let mut inner = self.lock();
        let item = inner.items.get_mut(path).ok_or_else(|| Error::UnknownPath(path.to_owned()))?;
        if item.value == value && item.text == text {
            return Ok(false);
        }
        item.value = value;
        item.text = text;
        item.flags |= FLAG_DIRTY;
        Ok(true)
    }

    /// Removes the item at `path` and every item below it; they are announced invalid in the
    /// next flush (velib `del_tree`). Returns how many items were removed.
    pub fn remove_tree(&self, path: &str) -> usize {
        let mut inner = self.lock();
        let below = format!("{path}/");
        let doomed: Vec<String> =
            inner.items.keys().filter(|p| p.as_str() == path || p.starts_with(&below)).cloned().collect();
        for p in &doomed {
            inner.items.remove(p);
        }
        let count = doomed.len();
        inner.removed.extend(doomed);
        count
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All paths (sorted).
    pub fn paths(&self) -> Vec<String> {
        self.lock().items.keys().cloned().collect()
    }

    /// What `path` is: a leaf, an implicit node, the root, or nothing.
    pub fn kind_of(&self, path: &str) -> Option<ObjectKind> {
        if path == "/" {
            return Some(ObjectKind::Root);
        }
        let inner = self.lock();
        if inner.items.contains_key(path) {
            return Some(ObjectKind::Leaf);
        }
        let prefix = format!("{path}/");
        let node = inner.items.range(prefix.clone()..).next().is_some_and(|(p, _)| p.starts_with(&prefix));
        node.then_some(ObjectKind::Node)
    }

    /// The direct children of a node (one path component each, sorted, unique).
    pub fn children(&self, path: &str) -> Vec<String> {
        let prefix = if path == "/" { "/".to_owned() } else { format!("{path}/") };
        let inner = self.lock();
        let mut children: Vec<String> = Vec::new();
        for (p, _) in inner.items.range(prefix.clone()..) {
            let Some(rest) = p.strip_prefix(&prefix) else { break };
            let child = rest.split('/').next().unwrap_or(rest);
            if children.last().map(String::as_str) != Some(child) {
                children.push(child.to_owned());
            }
        }
        children
    }

    /// `GetItems`: every item with its absolute path.
    pub fn items_dict(&self) -> BTreeMap<String, Entry> {
        self.lock().items.iter().map(|(p, item)| (p.clone(), entry(p, item))).collect()
    }

    /// Tree `GetValue` / `GetText` on a node: items below `node`, keys relative to it.
    fn subtree<T>(&self, node: &str, f: impl Fn(&str, &Item) -> T) -> BTreeMap<String, T> {
        let prefix = if node == "/" { "/".to_owned() } else { format!("{node}/") };
        let inner = self.lock();
        let mut out = BTreeMap::new();
        for (p, item) in inner.items.range(prefix.clone()..) {
            let Some(rest) = p.strip_prefix(&prefix) else { break };
            out.insert(rest.to_owned(), f(p, item));
        }
        out
    }

    /// Takes the changes since the last call: changed items and removed paths.
    fn take_changes(&self) -> BTreeMap<String, Entry> {
        let mut inner = self.lock();
        let mut changes = BTreeMap::new();
        for path in std::mem::take(&mut inner.removed) {
            changes.insert(path, invalid_entry());
        }
        for (p, item) in inner.items.iter_mut() {
            if item.is_dirty() {
                item.flags &= !FLAG_DIRTY;
                changes.insert(p.clone(), entry(p, item));
            }
        }
        changes
    }
}

/// A remote `SetValue` for the owner (the polling engine) to decide.
///
/// Dropping it without an answer counts as a rejection (SetValue answers 2).
#[derive(Debug)]
pub struct SetRequest {
    /// The bus name of the service.
    pub service: Arc<str>,
    /// The item path.
    pub path: String,
    /// The value, already coerced to the item's declared type.
    pub value: ItemValue,
    reply: async_channel::Sender<bool>,
}

impl SetRequest {
    /// Answers the request: `true` stores the value and answers 0, `false` answers 2.
    pub fn respond(self, accepted: bool) {
        // The caller may be gone (connection closed); nothing to do then.
        let _ = self.reply.try_send(accepted);
    }

    /// `respond(true)`.
    pub fn accept(self) {
        self.respond(true)
    }

    /// `respond(false)`.
    pub fn reject(self) {
        self.respond(false)
    }
}

/// A synchronous check run before the owner is asked (e.g. a range check): `false` answers 2.
pub type Validator = Box<dyn Fn(&str, &ItemValue) -> bool + Send + Sync>;

/// The object, interface and member a method call addresses.
#[derive(Debug, Clone, Copy)]
pub struct CallTarget<'a> {
    /// Object path.
    pub path: &'a str,
    /// Interface (`None` when the caller sent none).
    pub interface: Option<&'a str>,
    /// Method name.
    pub member: &'a str,
}

/// An answer that is computed later (it waits for a device): the messages to send, reply first.
pub type DeferredReply = Pin<Box<dyn Future<Output = Vec<Message>> + Send + 'static>>;

/// Lets a service answer extra methods or override BusItem ones (the settings stand-in).
pub trait CallHook: Send + Sync + 'static {
    /// Called before [`CallHook::handle`]. `Some(future)`: the dispatcher moves on at once and
    /// a spawned task sends what the future yields, so a slow answer (VregLink waiting for the
    /// Modbus bus) never holds up other calls.
    fn defer(&self, _tree: &ItemTree, _call: &Message, _target: CallTarget<'_>) -> Option<DeferredReply> {
        None
    }

    /// Called for every method call not deferred. `Some(messages)`: send these (the reply
    /// first, then any signals) instead of the default handling.
    fn handle(&self, tree: &ItemTree, call: &Message, target: CallTarget<'_>) -> Option<Vec<Message>>;

    /// Extra interface XML for introspection of an object of `kind`.
    fn introspect_extra(&self, _kind: ObjectKind) -> &'static str {
        ""
    }
}

struct Shared {
    name: Arc<str>,
    tree: ItemTree,
    owner: Option<async_channel::Sender<SetRequest>>,
    validator: Option<Validator>,
    hook: Option<Arc<dyn CallHook>>,
    properties_changed_on_flush: bool,
}

/// Builds a service with all its items before the name is requested (venus-conventions §6).
pub struct ServiceBuilder {
    name: String,
    tree: ItemTree,
    owner: Option<async_channel::Sender<SetRequest>>,
    validator: Option<Validator>,
    hook: Option<Arc<dyn CallHook>>,
    properties_changed_on_flush: bool,
}

impl ServiceBuilder {
    /// A service that will own `name` (e.g. `com.victronenergy.grid.cg_123`).
    pub fn new(name: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder {
            name: name.into(),
            tree: ItemTree::default(),
            owner: None,
            validator: None,
            hook: None,
            properties_changed_on_flush: false,
        }
    }

    /// Adds an item (its initial value is there when the name appears).
    pub fn add(&mut self, path: &str, item: Item) -> Result<&mut Self, Error> {
        self.tree.insert(path, item)?;
        Ok(self)
    }

    /// A copy of an item added so far.
    pub fn item(&self, path: &str) -> Option<Item> {
        self.tree.get(path)
    }

    /// Remote writes that pass the checks are sent here; without an owner they are stored
    /// directly (vedbus without callback).
    pub fn owner(&mut self, owner: async_channel::Sender<SetRequest>) -> &mut Self {
        self.owner = Some(owner);
        self
    }

    /// A quick synchronous check before the owner is asked.
    pub fn validator(&mut self, validator: Validator) -> &mut Self {
        self.validator = Some(validator);
        self
    }

    /// Installs a call hook (extra methods / overrides).
    pub fn hook(&mut self, hook: Arc<dyn CallHook>) -> &mut Self {
        self.hook = Some(hook);
        self
    }

    /// `flush()` also emits a `PropertiesChanged` per changed path (`--properties-changed`).
    pub fn properties_changed_on_flush(&mut self, enabled: bool) -> &mut Self {
        self.properties_changed_on_flush = enabled;
        self
    }

    /// Connects, starts the dispatcher, then requests the name with DO_NOT_QUEUE.
    pub async fn register(self, bus: &BusChoice, spawner: &Spawner) -> Result<Service, Error> {
        // The initial items are not "changes": consumers read them with GetItems.
        let _ = self.tree.take_changes();
        let shared = Arc::new(Shared {
            name: Arc::from(self.name.as_str()),
            tree: self.tree,
            owner: self.owner,
            validator: self.validator,
            hook: self.hook,
            properties_changed_on_flush: self.properties_changed_on_flush,
        });
        let bus_conn = connect(bus, spawner).await?;
        let conn = bus_conn.conn.clone();
        // Created before RequestName so a call arriving right after NameOwnerChanged is queued.
        let stream = MessageStream::from(&conn);
        let dispatcher = spawner.spawn(dispatch_loop(stream, conn.clone(), shared.clone(), spawner.clone()));
        let flags = zbus::fdo::RequestNameFlags::DoNotQueue.into();
        match conn.request_name_with_flags(self.name.as_str(), flags).await {
            Ok(zbus::fdo::RequestNameReply::PrimaryOwner | zbus::fdo::RequestNameReply::AlreadyOwner) => {}
            Ok(_) | Err(zbus::Error::NameTaken) => return Err(Error::NameTaken(self.name)),
            Err(e) => return Err(e.into()),
        }
        log::debug!("registered {} as {:?}", self.name, conn.unique_name().map(|n| n.as_str()));
        Ok(Service { shared, bus_conn, _dispatcher: dispatcher })
    }
}

/// A registered service. Dropping it closes the connection (the bus then announces the name
/// gone); [`Service::unregister`] releases the name first.
pub struct Service {
    shared: Arc<Shared>,
    bus_conn: BusConnection,
    _dispatcher: Task<()>,
}

impl Service {
    /// The well-known name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The connection's unique name (`:1.42`), which consumers key signals on.
    pub fn unique_name(&self) -> Option<String> {
        self.bus_conn.conn.unique_name().map(|n| n.to_string())
    }

    /// The connection (e.g. to watch NameOwnerChanged for this service).
    pub fn connection(&self) -> &Connection {
        &self.bus_conn.conn
    }

    /// The item store.
    pub fn tree(&self) -> &ItemTree {
        &self.shared.tree
    }

    /// Sets a value with its default text. Returns whether it changed (unknown path: error).
    pub fn set_value(&self, path: &str, value: impl Into<ItemValue>) -> Result<bool, Error> {
        self.shared.tree.set(path, value.into(), None)
    }

    /// Sets a value and its display text.
    pub fn set(
        &self,
        path: &str,
        value: impl Into<ItemValue>,
        text: impl Into<String>,
    ) -> Result<bool, Error> {
        self.shared.tree.set(path, value.into(), Some(text.into()))
    }

    /// The current value at `path`.
    pub fn value(&self, path: &str) -> Option<ItemValue> {
        self.shared.tree.get(path).map(|item| item.value)
    }

    /// Adds an item after registration; it appears in the next flush and in GetItems.
    pub fn add_item(&self, path: &str, item: Item) -> Result<(), Error> {
        self.shared.tree.insert(path, item)
    }

    /// Removes `path` and everything below; the next flush publishes them invalid.
    pub fn remove_tree(&self, path: &str) -> usize {
        self.shared.tree.remove_tree(path)
    }

    /// Emits one `ItemsChanged` on `/` with what changed since the last flush (nothing if
    /// nothing changed), plus per-path `PropertiesChanged` when enabled.
    pub async fn flush(&self) -> Result<usize, Error> {
        let changes = self.shared.tree.take_changes();
        if changes.is_empty() {
            return Ok(0);
        }
        let count = changes.len();
        let conn = &self.bus_conn.conn;
        if self.shared.properties_changed_on_flush {
            for (path, e) in &changes {
                conn.emit_signal(None::<()>, path.as_str(), BUSITEM, "PropertiesChanged", &(e,)).await?;
            }
        }
        conn.emit_signal(None::<()>, "/", BUSITEM, "ItemsChanged", &(changes,)).await?;
        Ok(count)
    }

    /// Releases the name and closes the connection.
    pub async fn unregister(self) -> Result<(), Error> {
        let conn = self.bus_conn.conn.clone();
        let released = conn.release_name(&*self.shared.name).await;
        drop(self);
        conn.close().await?;
        released.map(|_| ()).map_err(Error::from)
    }
}

async fn dispatch_loop(mut stream: MessageStream, conn: Connection, shared: Arc<Shared>, spawner: Spawner) {
    while let Some(msg) = stream.next().await {
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => {
                log::warn!("{}: bad incoming message: {e}", shared.name);
                continue;
            }
        };
        if msg.message_type() != MessageType::MethodCall {
            continue;
        }
        match handle_call(&shared, &msg) {
            Action::Send(messages) => {
                for m in messages {
                    if let Err(e) = conn.send(&m).await {
                        log::warn!("{}: sending reply failed: {e}", shared.name);
                    }
                }
            }
            Action::AskOwner { owner, path, value } => {
                let task = ask_owner(conn.clone(), shared.clone(), msg, owner, path, value);
                spawner.spawn(task).detach();
            }
            Action::Defer(reply) => {
                let (conn, name) = (conn.clone(), shared.name.clone());
                let task = async move {
                    for m in reply.await {
                        if let Err(e) = conn.send(&m).await {
                            log::warn!("{name}: sending a deferred reply failed: {e}");
                        }
                    }
                };
                spawner.spawn(task).detach();
            }
        }
    }
}

enum Action {
    Send(Vec<Message>),
    Defer(DeferredReply),
    AskOwner { owner: async_channel::Sender<SetRequest>, path: String, value: ItemValue },
}

/// Waits for the owner's verdict and answers the SetValue call (runs as its own task).
async fn ask_owner(
    conn: Connection,
    shared: Arc<Shared>,
    call: Message,
    owner: async_channel::Sender<SetRequest>,
    path: String,
    value: ItemValue,
) {
    let (reply_tx, reply_rx) = async_channel::bounded(1);
    let request = SetRequest {
        service: shared.name.clone(),
        path: path.clone(),
        value: value.clone(),
        reply: reply_tx,
    };
    let accepted = owner.send(request).await.is_ok() && reply_rx.recv().await.unwrap_or(false);
    let mut messages = Vec::with_capacity(2);
    if accepted {
        match shared.tree.with_item(&path, |item| {
            item.value = value;
            item.text = None;
            entry(&path, item)
        }) {
            Some(e) => {
                messages.push(method_return(&call, &0i32));
                messages.push(signal(&path, "PropertiesChanged", &(e,)));
            }
            // Removed while the owner was deciding.
            None => messages.push(error_reply(&call, fdo::Error::UnknownObject(path.clone()))),
        }
    } else {
        messages.push(method_return(&call, &2i32));
    }
    for m in messages.into_iter().flatten() {
        if let Err(e) = conn.send(&m).await {
            log::warn!("{}: sending SetValue reply failed: {e}", shared.name);
        }
    }
}

/// Builds a method return; building only fails for bodies zbus cannot encode.
pub fn method_return<B>(call: &Message, body: &B) -> Option<Message>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let built = Message::method_return(&call.header()).and_then(|b| b.build(body));
    match built {
        Ok(m) => Some(m),
        Err(e) => {
            log::warn!("building a reply failed: {e}");
            error_reply(call, fdo::Error::Failed(e.to_string()))
        }
    }
}

/// Builds an error reply.
pub fn error_reply(call: &Message, error: fdo::Error) -> Option<Message> {
    error.create_reply(&call.header()).ok()
}

/// Builds a BusItem signal on `path`.
pub fn signal<B>(path: &str, member: &str, body: &B) -> Option<Message>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    match Message::signal(path, BUSITEM, member).and_then(|b| b.build(body)) {
        Ok(m) => Some(m),
        Err(e) => {
            log::warn!("building signal {member} on {path} failed: {e}");
            None
        }
    }
}

fn machine_id() -> String {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn handle_call(shared: &Shared, msg: &Message) -> Action {
    let header = msg.header();
    let path = header.path().map(|p| p.as_str()).unwrap_or("/");
    let interface = header.interface().map(|i| i.as_str());
    let member = header.member().map(|m| m.as_str()).unwrap_or("");
    let target = CallTarget { path, interface, member };
    if let Some(hook) = &shared.hook {
        if let Some(reply) = hook.defer(&shared.tree, msg, target) {
            return Action::Defer(reply);
        }
        if let Some(messages) = hook.handle(&shared.tree, msg, target) {
            return Action::Send(messages);
        }
    }
    let one = |m: Option<Message>| Action::Send(m.into_iter().collect());
    let fail = |e: fdo::Error| one(error_reply(msg, e));

    match (interface, member) {
        (Some("org.freedesktop.DBus.Peer"), "Ping") => return one(method_return(msg, &())),
        (Some("org.freedesktop.DBus.Peer"), "GetMachineId") => return one(method_return(msg, &machine_id())),
        _ => {}
    }
    let Some(kind) = shared.tree.kind_of(path) else {
        return fail(fdo::Error::UnknownObject(format!("no object at {path}")));
    };
    match (interface, member) {
        (Some("org.freedesktop.DBus.Introspectable"), "Introspect") => {
            let children = if kind == ObjectKind::Leaf { Vec::new() } else { shared.tree.children(path) };
            let extra = shared.hook.as_ref().map_or("", |h| h.introspect_extra(kind));
            let xml = introspect_xml(kind, children.iter().map(String::as_str), extra);
            one(method_return(msg, &xml))
        }
        (Some(BUSITEM) | None, _) => match kind {
            ObjectKind::Leaf => leaf_call(shared, msg, path, member),
            ObjectKind::Node | ObjectKind::Root => node_call(shared, msg, path, member, kind),
        },
        (Some(other), _) => fail(fdo::Error::UnknownMethod(format!("no method {other}.{member} on {path}"))),
    }
}

fn node_call(shared: &Shared, msg: &Message, path: &str, member: &str, kind: ObjectKind) -> Action {
    let one = |m: Option<Message>| Action::Send(m.into_iter().collect());
    match member {
        "GetValue" => {
            let values = shared.tree.subtree(path, |_, item| item.value.to_dbus());
            one(method_return(msg, &Value::Dict(Dict::from(values))))
        }
        "GetText" => {
            let texts = shared.tree.subtree(path, |p, item| item.text(p));
            one(method_return(msg, &Value::Dict(Dict::from(texts))))
        }
        "GetItems" if kind == ObjectKind::Root => one(method_return(msg, &shared.tree.items_dict())),
        _ => one(error_reply(msg, fdo::Error::UnknownMethod(format!("no method {member} on node {path}")))),
    }
}

fn leaf_call(shared: &Shared, msg: &Message, path: &str, member: &str) -> Action {
    let one = |m: Option<Message>| Action::Send(m.into_iter().collect());
    let Some(item) = shared.tree.get(path) else {
        return one(error_reply(msg, fdo::Error::UnknownObject(path.to_owned())));
    };
    match member {
        "GetValue" => one(method_return(msg, &item.value.to_dbus())),
        "GetText" => one(method_return(msg, &item.text(path))),
        "GetDescription" => {
            let text = item.description.as_deref().unwrap_or("No description given");
            one(method_return(msg, &text))
        }
        "SetValue" => set_value(shared, msg, path, item),
        _ => one(error_reply(msg, fdo::Error::UnknownMethod(format!("no method {member} on {path}")))),
    }
}

fn set_value(shared: &Shared, msg: &Message, path: &str, item: Item) -> Action {
    let one = |m: Option<Message>| Action::Send(m.into_iter().collect());
    let answer = |code: i32| one(method_return(msg, &code));
    let body = msg.body();
    if body.signature().to_string() != "v" {
        let e = fdo::Error::InvalidArgs(format!("SetValue takes one variant, got '{}'", body.signature()));
        return one(error_reply(msg, e));
    }
    let converted = body
        .deserialize::<Value<'_>>()
        .map_err(|_| crate::setvalue::Refusal::WrongType)
        .and_then(|raw| crate::setvalue::convert(&raw, item.is_writable(), item.kind));
    let value = match converted {
        Ok(value) => value,
        Err(refusal) => return answer(refusal.code()),
    };
    if value == item.value && item.flags & FLAG_REFRESH == 0 {
        return answer(0);
    }
    if let Some(validator) = &shared.validator {
        if !validator(path, &value) {
            return answer(2);
        }
    }
    match &shared.owner {
        Some(owner) => Action::AskOwner { owner: owner.clone(), path: path.to_owned(), value },
        None => {
            let stored = shared.tree.with_item(path, |item| {
                item.value = value;
                item.text = None;
                entry(path, item)
            });
            match stored {
                Some(e) => Action::Send(
                    [method_return(msg, &0i32), signal(path, "PropertiesChanged", &(e,))]
                        .into_iter()
                        .flatten()
                        .collect(),
                ),
                None => one(error_reply(msg, fdo::Error::UnknownObject(path.to_owned()))),
            }
        }
    }
}
