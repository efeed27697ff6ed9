// Speech from the microphone (MediaRecorder): Chromium records webm/opus, which the server
// probes like any audio file.
const TYPES = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];

export function canRecord() {
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder);
}

// start() → a recording: {stop() → Promise<File>, startedAt}.
export async function startRecording() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const type = TYPES.find((candidate) => MediaRecorder.isTypeSupported(candidate)) || "";
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const chunks = [];
  recorder.addEventListener("dataavailable", (e) => e.data.size && chunks.push(e.data));
  recorder.start(250);
  return {
    startedAt: performance.now(),
    stop() {
      return new Promise((resolve) => {
        recorder.addEventListener("stop", () => {
          for (const track of stream.getTracks()) track.stop();
          const mime = recorder.mimeType || type || "audio/webm";
          const extension = mime.includes("ogg") ? "ogg" : mime.includes("mp4") ? "m4a" : "webm";
          resolve(new File(chunks, `recording.${extension}`, { type: mime }));
        });
        recorder.stop();
      });
    },
  };
}
