// Starts `cardgen lsp` for .card files: diagnostics, hover, go to definition, completion,
// formatting and the ▷ claim code action all come from the server; highlighting from the grammar.
"use strict";
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("cardgen");
  const server = {
    command: config.get("server.command", "cardgen"),
    args: config.get("server.args", ["lsp"]),
    transport: TransportKind.stdio,
  };
  client = new LanguageClient("cardgen", "cardgen", server, {
    documentSelector: [{ scheme: "file", language: "card" }, { scheme: "untitled", language: "card" }],
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/*.card") },
  });
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
