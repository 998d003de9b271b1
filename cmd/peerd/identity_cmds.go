package main

// identityCommands returns the key, certificate and revocation subcommands.
func identityCommands() []command {
	return nil
}
