// @sluicehq/sluice-sdk: the AssemblyScript SDK for Sluice destination plugins (abi/SPEC.md).
// The plugin's entry file imports from here and re-exports "./exports".
export * from "./sdk";
export * from "./json";
export * from "./batch";
export * from "./bytes";
export { Status, statusName } from "./host";
