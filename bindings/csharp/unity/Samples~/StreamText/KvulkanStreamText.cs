// kvulkan sample: loads a GGUF model from StreamingAssets and streams generated text into a
// string, one decode step per frame, so the game keeps rendering while the model writes.
//
// Put a model (e.g. stories260K.gguf) into Assets/StreamingAssets, add this component to a
// GameObject and press Play; the text appears in the Console and in `generated`.
// Android keeps StreamingAssets inside the APK: read the file with UnityWebRequest there and use
// Model.FromBytes(runtime, bytes) instead of the path.
// A decode step blocks the calling thread until the GPU is done (milliseconds for small models).
// For large models run the loop on a worker thread: a session may be used from any thread, one
// thread at a time.
using System.Collections;
using System.IO;
using System.Text;
using Kvulkan;
using UnityEngine;

public class KvulkanStreamText : MonoBehaviour
{
    public string modelFile = "stories260K.gguf";
    public string prompt = "Once upon a time";
    public int maxTokens = 128;
    [Tooltip("Most GPU memory kvulkan may use, in MiB (0: no limit): leave room for the game.")]
    public int memoryBudgetMiB = 512;
    [TextArea(5, 20)] public string generated = "";

    Runtime _runtime;
    Model _model;
    Session _session;

    IEnumerator Start()
    {
        try
        {
            _runtime = new Runtime(new RuntimeOptions
            {
                MemoryBudget = (ulong)memoryBudgetMiB << 20,
                // Called from kvulkan's threads: Debug.Log is thread-safe.
                Log = (level, message) => Debug.Log("kvulkan " + level + ": " + message),
            });
            _model = _runtime.LoadModel(Path.Combine(Application.streamingAssetsPath, modelFile));
            _session = _model.CreateSession(new SessionOptions { NCtx = 512 });
            _session.Prefill(_model.Tokenize(prompt));
        }
        catch (KvException e)
        {
            // e.Status is the kv_status, e.NativeMessage the library's explanation.
            Debug.LogError("kvulkan: " + e.Message);
            yield break;
        }
        Debug.Log("kvulkan " + Library.VersionString + " on " + _runtime.GetInfo().DeviceName);

        var text = new StringBuilder(prompt);
        // GenerateText runs one decode step per MoveNext: one step per frame here.
        foreach (string piece in _session.GenerateText(maxTokens))
        {
            text.Append(piece);
            generated = text.ToString();
            yield return null;
        }
        Debug.Log(generated);
    }

    void OnDestroy()
    {
        // Sessions before their model, models before their runtime (the binding would also
        // defer a parent's release until its children are gone).
        if (_session != null) _session.Dispose();
        if (_model != null) _model.Dispose();
        if (_runtime != null) _runtime.Dispose();
    }
}
