package dev.kvulkan.sample;

import android.app.Activity;
import android.content.Intent;
import android.content.SharedPreferences;
import android.database.Cursor;
import android.net.Uri;
import android.os.Bundle;
import android.os.ParcelFileDescriptor;
import android.provider.OpenableColumns;
import android.widget.Button;
import android.widget.EditText;
import android.widget.ScrollView;
import android.widget.TextView;

import java.io.IOException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

// ---- [java binding] bindings/java (package dev.kvulkan). Used here: Runtime, Model, Session,
// SessionDesc, SamplerDesc, KvException, and Session.generate's streaming listener. ----
import dev.kvulkan.KvException;
import dev.kvulkan.Model;
import dev.kvulkan.Runtime;
import dev.kvulkan.SamplerDesc;
import dev.kvulkan.Session;
import dev.kvulkan.SessionDesc;

/**
 * One screen: open a GGUF model with the Storage Access Framework, type a prompt, watch the
 * continuation stream in. Every kvulkan call runs on one worker thread (a Session is used by one
 * thread at a time); the UI thread only posts work and appends text.
 */
public final class MainActivity extends Activity {
    private static final int REQUEST_OPEN_MODEL = 1;
    private static final String PREFS = "kvulkan";
    private static final String PREF_MODEL_URI = "model_uri";
    private static final int N_CTX = 2048;
    private static final int MAX_NEW_TOKENS = 256;

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private volatile boolean stopRequested;

    // Owned by the worker thread.
    private Runtime runtime;
    private Model model;
    private Session session;

    private TextView status;
    private EditText prompt;
    private Button generate;
    private Button stop;
    private TextView output;
    private ScrollView scroll;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        status = findViewById(R.id.status);
        prompt = findViewById(R.id.prompt);
        generate = findViewById(R.id.generate);
        stop = findViewById(R.id.stop);
        output = findViewById(R.id.output);
        scroll = findViewById(R.id.scroll);

        findViewById(R.id.pick).setOnClickListener(v -> {
            // GGUF has no registered MIME type: any openable document.
            Intent intent = new Intent(Intent.ACTION_OPEN_DOCUMENT)
                    .addCategory(Intent.CATEGORY_OPENABLE)
                    .setType("*/*");
            startActivityForResult(intent, REQUEST_OPEN_MODEL);
        });
        generate.setOnClickListener(v -> startGenerating(prompt.getText().toString()));
        stop.setOnClickListener(v -> stopRequested = true);

        // The model of the last run, if its read permission is still held.
        String saved = getSharedPreferences(PREFS, MODE_PRIVATE).getString(PREF_MODEL_URI, null);
        if (saved != null) {
            Uri uri = Uri.parse(saved);
            boolean granted = getContentResolver().getPersistedUriPermissions().stream()
                    .anyMatch(p -> p.getUri().equals(uri) && p.isReadPermission());
            if (granted) loadModel(uri);
        }
    }

    @Override
    protected void onActivityResult(int requestCode, int resultCode, Intent data) {
        super.onActivityResult(requestCode, resultCode, data);
        if (requestCode != REQUEST_OPEN_MODEL || resultCode != RESULT_OK || data == null) return;
        Uri uri = data.getData();
        if (uri == null) return;
        getContentResolver().takePersistableUriPermission(uri, Intent.FLAG_GRANT_READ_URI_PERMISSION);
        SharedPreferences.Editor e = getSharedPreferences(PREFS, MODE_PRIVATE).edit();
        e.putString(PREF_MODEL_URI, uri.toString()).apply();
        loadModel(uri);
    }

    private void loadModel(Uri uri) {
        String name = displayName(uri);
        generate.setEnabled(false);
        status.setText("Loading " + name + "…");
        worker.execute(() -> {
            closeModel();
            try {
                if (runtime == null) runtime = new Runtime();  // the best Vulkan device
                // kvulkan memory-maps a path; a document is reached through its open descriptor.
                // A provider that streams (a cloud document) gives a pipe, which cannot be
                // mapped: kv_model_load then fails with KV_ERR_IO, shown below.
                try (ParcelFileDescriptor fd = getContentResolver().openFileDescriptor(uri, "r")) {
                    if (fd == null) throw new IOException("the document provider gave no file");
                    model = runtime.loadModel("/proc/self/fd/" + fd.getFd());
                }
                session = model.newSession(new SessionDesc().nCtx(N_CTX)
                        .sampler(new SamplerDesc().temperature(0.8f).topP(0.95f).seed(System.nanoTime())));
                String device = runtime.info().deviceName;
                runOnUiThread(() -> {
                    status.setText(name + " on " + device);
                    generate.setEnabled(true);
                });
            } catch (KvException | IOException e) {
                closeModel();
                runOnUiThread(() -> status.setText("Cannot load " + name + ": " + e.getMessage()));
            }
        });
    }

    private void startGenerating(String text) {
        generate.setEnabled(false);
        stop.setEnabled(true);
        stopRequested = false;
        output.setText(text);
        worker.execute(() -> {
            String error = null;
            try {
                session.reset();
                session.prefill(model.tokenize(text));
                session.generate(MAX_NEW_TOKENS, (token, piece) -> {
                    runOnUiThread(() -> {
                        output.append(piece);
                        scroll.post(() -> scroll.fullScroll(ScrollView.FOCUS_DOWN));
                    });
                    return !stopRequested;
                });
            } catch (KvException e) {
                error = e.getMessage();
            }
            String shown = error;
            runOnUiThread(() -> {
                if (shown != null) output.append("\n[" + shown + "]");
                generate.setEnabled(true);
                stop.setEnabled(false);
            });
        });
    }

    /** Worker thread: closes the session and the model (children first). */
    private void closeModel() {
        if (session != null) session.close();
        if (model != null) model.close();
        session = null;
        model = null;
    }

    private String displayName(Uri uri) {
        try (Cursor c = getContentResolver().query(uri, new String[] {OpenableColumns.DISPLAY_NAME}, null, null, null)) {
            if (c != null && c.moveToFirst() && !c.isNull(0)) return c.getString(0);
        }
        return uri.getLastPathSegment();
    }

    @Override
    protected void onDestroy() {
        stopRequested = true;
        worker.execute(() -> {
            closeModel();
            if (runtime != null) runtime.close();
            runtime = null;
        });
        worker.shutdown();
        super.onDestroy();
    }
}
