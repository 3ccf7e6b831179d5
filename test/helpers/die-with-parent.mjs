// Preloaded into every server a test starts (test/helpers/process.ts): the IPC channel to the
// test process closes when that process ends, however it ends, and the server then ends too,
// so that a failing or interrupted run leaves no server behind. Not part of the server.
if (process.send) {
  process.on('disconnect', () => process.kill(process.pid, 'SIGKILL'));
  process.channel?.unref(); // the channel alone does not keep the server running
}
