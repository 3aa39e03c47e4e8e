// Microphone capture, resampling to 16 kHz and WAV encoding, all in the page.
//
// The browser captures at its AudioContext rate (usually 44.1 or 48 kHz); the service wants
// 16 kHz mono 16-bit PCM. Resampler is a streaming windowed-sinc low-pass + interpolator, so
// the same code serves a recording (one pass) and the live stream (chunk by chunk).

export const TARGET_RATE = 16000;

export class Resampler {
  constructor(inRate, outRate = TARGET_RATE, zeroCrossings = 8) {
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate; // input samples per output sample
    // cutoff at 90% of the lower Nyquist frequency, as a fraction of the input rate's
    this.cut = Math.min(1, outRate / inRate) * 0.9;
    this.half = Math.ceil(zeroCrossings / this.cut); // kernel half-width in input samples
    this.buf = new Float32Array(this.half); // leading zeros: history before the first sample
    this.len = this.half;
    this.pos = this.half; // input position (in buf) of the next output sample
  }

  _kernel(u) {
    // windowed sinc (Hann), u in input samples from the output position
    if (Math.abs(u) >= this.half) return 0;
    const x = this.cut * u;
    const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
    return this.cut * sinc * (0.5 + 0.5 * Math.cos((Math.PI * u) / this.half));
  }

  _append(input) {
    if (this.len + input.length > this.buf.length) {
      const grown = new Float32Array(Math.max(this.buf.length * 2, this.len + input.length));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
  }

  /** Feed Float32 samples at inRate; returns the Float32 samples at outRate ready so far. */
  push(input) {
    if (this.inRate === this.outRate) return Float32Array.from(input);
    this._append(input);
    const out = [];
    const h = this.half;
    while (this.pos + h < this.len) {
      const c = Math.floor(this.pos);
      const frac = this.pos - c;
      let acc = 0;
      let norm = 0;
      for (let k = c - h + 1; k <= c + h; k++) {
        const w = this._kernel(k - c - frac);
        acc += this.buf[k] * w;
        norm += w;
      }
      out.push(norm > 0 ? acc / norm : 0);
      this.pos += this.step;
    }
    // drop what no later output can reach
    const keep = Math.floor(this.pos) - h;
    if (keep > 0) {
      this.buf.copyWithin(0, keep, this.len);
      this.len -= keep;
      this.pos -= keep;
    }
    return Float32Array.from(out);
  }

  /** End of input: pad with silence so the last samples come out. */
  flush() {
    if (this.inRate === this.outRate) return new Float32Array(0);
    return this.push(new Float32Array(this.half + Math.ceil(this.step)));
  }
}

/** Float samples in [-1, 1] → 16-bit little-endian PCM. */
export function toInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = Math.round(s < 0 ? s * 32768 : s * 32767);
  }
  return out;
}

/** A 16-bit mono WAV file (RIFF/WAVE, PCM) of float samples. */
export function encodeWav(samples, rate = TARGET_RATE) {
  const pcm = toInt16(samples);
  const buf = new ArrayBuffer(44 + pcm.byteLength);
  const v = new DataView(buf);
  const ascii = (off, s) => { for (let i = 0; i < s.length; i++) v.setUint8(off + i, s.charCodeAt(i)); };
  ascii(0, "RIFF");
  v.setUint32(4, 36 + pcm.byteLength, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  v.setUint32(16, 16, true); // fmt chunk size
  v.setUint16(20, 1, true); // PCM
  v.setUint16(22, 1, true); // mono
  v.setUint32(24, rate, true);
  v.setUint32(28, rate * 2, true); // byte rate
  v.setUint16(32, 2, true); // block align
  v.setUint16(34, 16, true); // bits per sample
  ascii(36, "data");
  v.setUint32(40, pcm.byteLength, true);
  new Int16Array(buf, 44).set(pcm); // little-endian on every platform browsers run on
  return new Blob([buf], { type: "audio/wav" });
}

export function rms(samples) {
  let s = 0;
  for (let i = 0; i < samples.length; i++) s += samples[i] * samples[i];
  return samples.length ? Math.sqrt(s / samples.length) : 0;
}

export function peak(samples) {
  let p = 0;
  for (let i = 0; i < samples.length; i++) p = Math.max(p, Math.abs(samples[i]));
  return p;
}

export class MicError extends Error {}

/**
 * One shared microphone. subscribe(fn) opens it on first use; fn(Float32Array, rate) gets
 * chunks of mono samples at the AudioContext's rate; the returned function unsubscribes,
 * and the microphone closes when nobody listens.
 */
export class Microphone {
  constructor() {
    this.listeners = new Set();
    this.opening = null;
    this.ctx = null;
  }

  async subscribe(fn) {
    this.listeners.add(fn);
    try {
      if (!this.ctx) {
        this.opening = this.opening || this._open();
        await this.opening;
      }
    } catch (e) {
      this.listeners.delete(fn);
      throw e;
    } finally {
      this.opening = null;
    }
    return () => {
      this.listeners.delete(fn);
      if (!this.listeners.size) this._close();
    };
  }

  get rate() {
    return this.ctx ? this.ctx.sampleRate : 0;
  }

  async _open() {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new MicError(
        "Browsers allow the microphone only on https:// pages or on http://localhost. " +
        "Open this page through localhost (e.g. an SSH tunnel) or HTTPS, or upload a file instead.");
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false,
                 autoGainControl: false },
      });
    } catch (e) {
      const why = {
        NotAllowedError: "Microphone permission was refused. Allow it in the address bar and try again.",
        NotFoundError: "No microphone was found.",
        NotReadableError: "The microphone is in use by another program.",
      }[e.name] || `The microphone could not be opened (${e.name}: ${e.message}).`;
      throw new MicError(why);
    }
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(stream);
    this.lastRate = ctx.sampleRate;
    const deliver = (chunk) => { for (const fn of this.listeners) fn(chunk, ctx.sampleRate); };
    let node;
    if (ctx.audioWorklet) {
      await ctx.audioWorklet.addModule(new URL("capture-worklet.js", import.meta.url));
      node = new AudioWorkletNode(ctx, "capture", { numberOfOutputs: 1, outputChannelCount: [1] });
      node.port.onmessage = (e) => deliver(e.data);
    } else { // older browsers
      node = ctx.createScriptProcessor(2048, 1, 1);
      node.onaudioprocess = (e) => deliver(Float32Array.from(e.inputBuffer.getChannelData(0)));
    }
    // keep the graph pulled without playing anything back
    const mute = ctx.createGain();
    mute.gain.value = 0;
    source.connect(node);
    node.connect(mute);
    mute.connect(ctx.destination);
    if (ctx.state === "suspended") await ctx.resume();
    this.ctx = ctx;
    this.stream = stream;
    this.node = node;
  }

  _close() {
    if (!this.ctx) return;
    if (this.node.port) this.node.port.onmessage = null;
    this.stream.getTracks().forEach((t) => t.stop());
    this.ctx.close();
    this.ctx = null;
  }
}

/** Record `seconds` of audio from the microphone → {wav: Blob, samples16k, peak}. */
export async function record(mic, seconds, onProgress) {
  let resampler = null;
  const parts = [];
  let got = 0;
  const need = Math.round(seconds * TARGET_RATE);
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  const unsubscribe = await mic.subscribe((chunk, rate) => {
    if (got >= need) return;
    resampler = resampler || new Resampler(rate);
    const out = resampler.push(chunk);
    parts.push(out);
    got += out.length;
    if (onProgress) onProgress(Math.min(1, got / need), rms(chunk));
    if (got >= need) done();
  });
  try {
    await finished;
  } finally {
    unsubscribe();
  }
  const samples = new Float32Array(need);
  let off = 0;
  for (const p of parts) {
    const n = Math.min(p.length, need - off);
    samples.set(p.subarray(0, n), off);
    off += n;
  }
  return { wav: encodeWav(samples), samples, peak: peak(samples) };
}
