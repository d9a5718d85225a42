/** Progress on a terminal: one redrawn bar with tokens/s; plain lines when not a TTY (logs, CI). */
export interface ProgressView {
  update(done: number, total: number, tokensPerSecond: number): void;
  finish(): void;
}

export function progressView(stream: NodeJS.WriteStream, label: string): ProgressView {
  if (stream.isTTY) {
    const width = 30;
    return {
      update(done, total, tps) {
        const filled = Math.round((done / total) * width);
        stream.write(`\r${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total} tokens  ${tps.toFixed(0)} tokens/s `);
      },
      finish() {
        stream.write("\n");
      },
    };
  }
  let lastQuarter = -1;
  return {
    update(done, total, tps) {
      const quarter = Math.floor((done / total) * 4);
      if (quarter !== lastQuarter) {
        lastQuarter = quarter;
        stream.write(`${label}: ${done}/${total} tokens, ${tps.toFixed(0)} tokens/s\n`);
      }
    },
    finish() {},
  };
}
