//! Introspection XML for the objects of a BusItem service.
//!
//! dbus-python generates this for every exported object; veutil walks the tree with it and
//! `busctl tree` / dbus-spy need the `<node>` children. The `extra` argument lets a service add
//! interface XML (the settings stand-in adds `com.victronenergy.Settings`).

use std::fmt::Write;

/// What kind of object a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `/`: tree methods plus GetItems / ItemsChanged.
    Root,
    /// An intermediate path component.
    Node,
    /// A value item.
    Leaf,
}

const HEADER: &str = "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n\
\"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n";

const STANDARD: &str = r#"  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect"><arg direction="out" type="s"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId"><arg direction="out" type="s"/></method>
  </interface>
"#;

const LEAF: &str = r#"  <interface name="com.victronenergy.BusItem">
    <method name="GetValue"><arg direction="out" type="v"/></method>
    <method name="GetText"><arg direction="out" type="s"/></method>
    <method name="SetValue"><arg direction="in" type="v"/><arg direction="out" type="i"/></method>
    <method name="GetDescription"><arg direction="in" type="s"/><arg direction="in" type="i"/><arg direction="out" type="s"/></method>
    <signal name="PropertiesChanged"><arg type="a{sv}"/></signal>
  </interface>
"#;

const NODE: &str = r#"  <interface name="com.victronenergy.BusItem">
    <method name="GetValue"><arg direction="out" type="v"/></method>
    <method name="GetText"><arg direction="out" type="v"/></method>
"#;

const ROOT_EXTRA: &str = r#"    <method name="GetItems"><arg direction="out" type="a{sa{sv}}"/></method>
    <signal name="ItemsChanged"><arg type="a{sa{sv}}"/></signal>
"#;

/// Builds the XML for one object with the given child node names (one path component each).
pub fn introspect_xml<'a>(
    kind: ObjectKind,
    children: impl IntoIterator<Item = &'a str>,
    extra: &str,
) -> String {
    let mut xml = String::with_capacity(2048);
    xml.push_str(HEADER);
    xml.push_str("<node>\n");
    xml.push_str(STANDARD);
    match kind {
        ObjectKind::Leaf => xml.push_str(LEAF),
        ObjectKind::Node | ObjectKind::Root => {
            xml.push_str(NODE);
            if kind == ObjectKind::Root {
                xml.push_str(ROOT_EXTRA);
            }
            xml.push_str("  </interface>\n");
        }
    }
    xml.push_str(extra);
    for child in children {
        // Writing into a String cannot fail.
        let _ = writeln!(xml, "  <node name=\"{child}\"/>");
    }
    xml.push_str("</node>\n");
    xml
}
