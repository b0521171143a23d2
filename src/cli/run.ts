// The command line after the entry's Node check: `edge-gateway status ...` asks a running gateway
// what it serves; anything else runs the gateway. Each command is loaded only when it is the one
// asked for, so `status` starts without the gateway's dependencies.
export async function run(argv: readonly string[]): Promise<void> {
  try {
    if (argv[0] === 'status') {
      const { statusCommand } = await import('./status-command.ts')
      process.exitCode = await statusCommand(argv.slice(1))
      return
    }
    const { gatewayCommand } = await import('./gateway-command.ts')
    await gatewayCommand(argv)
  } catch (err) {
    process.stderr.write(`edge-gateway: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  }
}
