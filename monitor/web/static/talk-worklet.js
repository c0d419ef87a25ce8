// Talk-down microphone capture (talk.js): turns the microphone's float samples into 16-bit PCM frames of
// `frame` samples and posts each, with its RMS level, to the page. A same-origin file because the page's CSP
// allows scripts from 'self' only.
"use strict";
class TalkProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frame = options.processorOptions.frame;
    this.buf = new Int16Array(this.frame);
    this.n = 0;
    this.energy = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const v = Math.max(-1, Math.min(1, channel[i]));
      this.buf[this.n++] = v < 0 ? v * 0x8000 : v * 0x7fff;
      this.energy += v * v;
      if (this.n === this.frame) {
        const level = Math.sqrt(this.energy / this.frame);
        this.port.postMessage({ pcm: this.buf.buffer, level }, [this.buf.buffer]);
        this.buf = new Int16Array(this.frame);
        this.n = 0;
        this.energy = 0;
      }
    }
    return true;
  }
}
registerProcessor("talk-processor", TalkProcessor);
