// What to tell a person about each problem `code` the API returns (service/problems.py).
// The API's own `title` and `detail` are shown too; these add what to do about it.
// tests/test_ui_page.py checks that every code the service defines has an entry here.

export const HINTS = {
  "not-found": "The page asked for something the service does not have; reload the page.",
  "unknown-profile": "That profile no longer exists (deleted elsewhere?). Pick or create another.",
  "unknown-version": "That version does not exist; the timeline has been reloaded.",
  "unknown-word": "The active version has no such word (removed, or rolled back to before it was taught); the list has been reloaded.",
  "method-not-allowed": "The service does not accept this request; reload the page.",
  "validation-error": "A value is not accepted: check the profile name, word and threshold.",
  "invalid-label": "Words are 1–64 characters, without control characters.",
  "unsupported-media-type": "Upload WAV, FLAC or OGG audio (MP3, M4A and WebM are not accepted).",
  "missing-file": "The upload held no audio file.",
  "bad-multipart": "The upload was malformed; try again.",
  "body-too-large": "The recording is over the service's upload limit: record or upload something shorter.",
  "audio-too-long": "The recording is longer than the service accepts: record something shorter.",
  "upload-timeout": "The upload stalled; check the connection and try again.",
  "empty-audio": "The recording holds no samples: check that the microphone works and record again.",
  "not-audio": "The file is not readable audio: upload a WAV, FLAC or OGG file.",
  "truncated-audio": "The audio file is cut short: record or export it again.",
  "non-finite-audio": "The audio holds invalid samples: record again.",
  "bad-rate": "Use audio sampled between 8 and 48 kHz.",
  "too-short": "The recording is too short: record for longer.",
  "no-speech": "No word was heard: speak closer to the microphone, a little louder, and record again.",
  "bad-audio": "The audio cannot be used: record again or try another file.",
  "unauthorized": "This needs an API key: enter it at the top right (it stays in this tab only).",
  "forbidden-profile": "Your API key is limited to other profiles: pick one of those.",
  "read-only-profile": "'default' is the shipped model and cannot change: create a profile first.",
  "profile-exists": "A profile with that name already exists: pick it from the list or choose another name.",
  "version-conflict": "The profile changed meanwhile (another tab or a rollback); the timeline was reloaded, try again.",
  "corrupt-weights": "This version's stored weights fail their checksum: activate another version.",
  "not-ready": "The service is starting or its database is unavailable; try again in a moment.",
  "busy": "The service is busy with other recordings; try again in a few seconds.",
  "quota-exceeded": "A storage quota of the service is reached: delete a profile you no longer need, then try again.",
  "insufficient-storage": "The device's disk is full: delete a profile you no longer need, then try again.",
  "cross-origin": "The request came from another web page; open tracekws from its own address.",
  "idempotency-key-reused": "This retry does not match the first request; reload the page and try again.",
  "stream-idle": "The live connection received no audio for a while and was closed; press Start again.",
  "http-error": "The request was malformed; reload the page.",
  "internal-error": "The service failed unexpectedly (details are in its log); try again.",
  // not from the API: the page itself
  "network": "The service cannot be reached: is it running, and is this the right address?",
  "stream-closed": "The live connection closed; press Start to reconnect.",
  "microphone": "",
};

const STATUS = {
  401: "unauthorized", 403: "forbidden-profile", 404: "not-found", 408: "upload-timeout",
  413: "body-too-large", 415: "unsupported-media-type", 422: "validation-error",
  503: "not-ready", 507: "insufficient-storage",
};

/** A problem+json body (or a partial one) → {title, detail, code, status, hint, errors}. */
export function describe(problem) {
  const p = problem || {};
  const code = p.code || STATUS[p.status] || (p.status >= 500 ? "internal-error" : "http-error");
  return {
    title: p.title || "Request failed",
    detail: p.detail || "",
    code,
    status: p.status || 0,
    hint: HINTS[code] ?? "",
    errors: Array.isArray(p.errors) ? p.errors : [],
  };
}
