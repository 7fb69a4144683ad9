// NUnit 2.6 tests of the C# binding against the real library (lavapipe in CI), run by
// bindings/csharp/tests/run_tests.sh. Environment: KV_SHARED_DIR (the shared/ directory with
// models/ and reference/), KV_ABI_LAYOUT (the kv-abi-layout program), LD_LIBRARY_PATH (the
// directory of libkvulkan.so).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using Kvulkan;
using Kvulkan.Interop;
using NUnit.Framework;

namespace Kvulkan.Tests
{
    static class Data
    {
        public static string Shared
        {
            get
            {
                string s = Environment.GetEnvironmentVariable("KV_SHARED_DIR");
                if (string.IsNullOrEmpty(s))
                    Assert.Fail("KV_SHARED_DIR is not set (run through run_tests.sh or ctest)");
                return s;
            }
        }

        public static string Stories { get { return Need(Path.Combine(Shared, "models/stories260K/stories260K.gguf")); } }
        public static string StoriesRef { get { return Need(Path.Combine(Shared, "reference/stories260K.once-upon-a-time.json")); } }

        static string Need(string path)
        {
            if (!File.Exists(path))
                Assert.Fail("test data not found: " + path);
            return path;
        }

        /// <summary>An integer array of the reference JSON ("prompt_ids", "generated_ids").</summary>
        public static int[] RefIds(string key)
        {
            string json = File.ReadAllText(StoriesRef);
            Match m = Regex.Match(json, "\"" + key + "\"\\s*:\\s*\\[([0-9,\\s]*)\\]");
            Assert.IsTrue(m.Success, key + " not found in " + StoriesRef);
            return m.Groups[1].Value.Split(new[] { ',' }, StringSplitOptions.RemoveEmptyEntries)
                .Select(s => int.Parse(s.Trim())).ToArray();
        }

        public static byte[] RefTextBytes()
        {
            string json = File.ReadAllText(StoriesRef);
            Match m = Regex.Match(json, "\"generated_text_hex\"\\s*:\\s*\"([0-9a-fA-F]*)\"");
            Assert.IsTrue(m.Success);
            string hex = m.Groups[1].Value;
            var bytes = new byte[hex.Length / 2];
            for (int i = 0; i < bytes.Length; i++)
                bytes[i] = Convert.ToByte(hex.Substring(2 * i, 2), 16);
            return bytes;
        }
    }

    [TestFixture]
    public class BindingTests
    {
        Runtime _rt;
        Model _model;
        readonly List<string> _validation = new List<string>();
        int[] _prompt;
        int[] _greedy;
        bool _validated = true;

        [TestFixtureSetUp]
        public void SetUp()
        {
            Action<LogLevel, string> log = (level, message) =>
            {
                if (level == LogLevel.Validation)
                    lock (_validation)
                        _validation.Add(message);
            };
            try
            {
                _rt = new Runtime(new RuntimeOptions { Validation = true, Log = log });
            }
            catch (KvException e)
            {
                if (e.Status != KvStatus.Unsupported)
                    throw;
                Console.WriteLine("validation layer not installed: running without it");
                _validated = false;
                _rt = new Runtime(new RuntimeOptions { Log = log });
            }
            _model = _rt.LoadModel(Data.Stories);
            _prompt = Data.RefIds("prompt_ids");
            _greedy = Data.RefIds("generated_ids");
            Assert.AreEqual(new[] { 1, 403, 407, 261, 378 }, _prompt);
            Assert.GreaterOrEqual(_greedy.Length, 64);
        }

        [TestFixtureTearDown]
        public void TearDown()
        {
            if (_model != null)
                _model.Dispose();
            if (_rt != null)
            {
                ulong count = _rt.ValidationMessageCount;
                _rt.Dispose();
                lock (_validation)
                    Assert.IsTrue(count == 0 && _validation.Count == 0,
                                  "validation messages (" + count + "): " + string.Join(" | ", _validation.Take(5)));
            }
        }

        Session NewSession(uint nCtx = 128, CacheType type = CacheType.F16)
        {
            return _model.CreateSession(new SessionOptions { NCtx = nCtx, CacheType = type });
        }

        [Test]
        public void VersionsAgree()
        {
            Version v = Library.LoadedVersion;
            Assert.AreEqual(Library.HeaderVersion.Major, v.Major, "a library of another major version");
            Assert.GreaterOrEqual(v, Library.HeaderVersion, "the library is older than the header this binding mirrors");
            Assert.AreEqual(v.Major + "." + v.Minor + "." + v.Build, Library.VersionString);
            Assert.AreEqual("KV_ERR_IO", Library.StatusName(KvStatus.IO));
            Assert.AreEqual("KV_ERR_BAD_TOKEN", Library.StatusName(KvStatus.BadToken));
        }

        [Test]
        public void StructLayoutsMatchTheCCompiler()
        {
            string tool = Environment.GetEnvironmentVariable("KV_ABI_LAYOUT");
            if (string.IsNullOrEmpty(tool))
                Assert.Fail("KV_ABI_LAYOUT (the kv-abi-layout program) is not set");
            var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, UseShellExecute = false };
            string output;
            using (var p = Process.Start(psi))
            {
                output = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                Assert.AreEqual(0, p.ExitCode, tool + " failed");
            }
            var seen = new HashSet<string>();
            int fields = 0;
            foreach (string line in output.Split('\n'))
            {
                string[] parts = line.Split(' ');
                if (parts.Length != 4)
                    continue;
                string name = parts[0], field = parts[1];
                int offset = int.Parse(parts[2]), size = int.Parse(parts[3]);
                Type t = typeof(Native).Assembly.GetType("Kvulkan.Interop." + name);
                Assert.IsNotNull(t, "no C# struct for " + name);
                seen.Add(name);
                if (field == "-")
                {
                    Assert.AreEqual(size, Marshal.SizeOf(t), name);
                    continue;
                }
                fields++;
                Assert.AreEqual(offset, (int)Marshal.OffsetOf(t, field), name + "." + field);
                var f = t.GetField(field);
                var byVal = (MarshalAsAttribute)Attribute.GetCustomAttribute(f, typeof(MarshalAsAttribute));
                int csSize = byVal != null ? byVal.SizeConst * Marshal.SizeOf(f.FieldType.GetElementType())
                                           : Marshal.SizeOf(f.FieldType.IsEnum ? Enum.GetUnderlyingType(f.FieldType) : f.FieldType);
                Assert.AreEqual(size, csSize, name + "." + field + " size");
            }
            Assert.That(seen, Has.Member("kv_device_info").And.Member("kv_session_stats").And.Member("kv_cache_stats"));
            Assert.Greater(fields, 80);
        }

        [Test]
        public void EnumeratesDevicesAndDescribesTheRuntimesDevice()
        {
            var devices = Library.EnumerateDevices();
            Assert.Greater(devices.Count, 0);
            DeviceInfo info = _rt.GetInfo();
            Assert.IsNotEmpty(info.DeviceName);
            Assert.That(devices.Select(d => d.DeviceName).ToList(), Has.Member(info.DeviceName));
            Assert.Greater(info.MaxStorageBufferRange, 0ul);
            Assert.Greater(info.MemoryHeaps.Length, 0);
        }

        [Test]
        public void SchedulingRequestsAreReportedBack()
        {
            var options = new RuntimeOptions { GpuBudgetUs = 500, QueuePriority = 0.5f, GlobalPriority = 512 };
            using (var rt = new Runtime(options))
            {
                DeviceInfo info = rt.GetInfo();
                Assert.AreEqual(0.5f, info.QueuePriority);
                Assert.That(info.GlobalPriority == 0u || info.GlobalPriority == 512u, "granted " + info.GlobalPriority);
                bool timestamps = (info.Features & (1u << 9)) != 0;  // KV_FEATURE_TIMESTAMPS
                Assert.AreEqual(timestamps ? 500u : 0u, info.GpuBudgetUs);
            }
        }

        [Test]
        public void LoadsTheModelAndTokenizes()
        {
            ModelInfo info = _model.Info();
            Assert.AreEqual("llama", info.Architecture);
            Assert.AreEqual(512u, info.NVocab);
            Assert.IsTrue(info.OnDevice);
            Assert.Greater(info.NParams, 200000ul);
            Assert.AreEqual(1, _model.Bos);
            Assert.AreEqual(_prompt, _model.Tokenize("Once upon a time"));
            Assert.AreEqual(_prompt.Skip(1).ToArray(), _model.Tokenize("Once upon a time", addSpecial: false));
            Assert.AreEqual("Once upon a time", _model.Detokenize(_prompt));
            Assert.AreEqual(new int[0], _model.Tokenize("", addSpecial: false));
            Assert.IsTrue(_model.IsEog(_model.Eos.Value));
            Assert.IsFalse(_model.IsEog(_prompt[1]));
            Assert.AreEqual(Encoding.UTF8.GetBytes(" upon"), _model.TokenToPiece(407));
        }

        [Test]
        public void Streams32TokensEqualToTheCApisGreedyTokens()
        {
            const int n = 32;
            // The C API alone (the low-level layer, no wrapper): prefill and kv_decode_step.
            var cTokens = new List<int>();
            using (var s = NewSession())
            using (var m = new ModelLeaseForTest(_model))
            {
                IntPtr sp = s.Handle.DangerousGetHandle();
                Assert.AreEqual(0, Native.kv_prefill(sp, _prompt, (uint)_prompt.Length));
                for (int i = 0; i < n; i++)
                {
                    int t;
                    Assert.AreEqual(0, Native.kv_decode_step(sp, out t));
                    cTokens.Add(t);
                }
            }
            // llama.cpp's greedy tokens for the same prompt (../shared/reference).
            Assert.AreEqual(_greedy.Take(n).ToArray(), cTokens.ToArray());

            using (var s = NewSession())
            {
                s.Prefill(_model.Tokenize("Once upon a time"));
                Assert.AreEqual(_prompt.Length, s.NTokens);
                int[] streamed = s.Generate(n).ToArray();
                Assert.AreEqual(cTokens.ToArray(), streamed);
                SessionStats st = s.Stats();
                Assert.AreEqual(_prompt.Length + n, (int)st.NTokens);
                Assert.AreEqual((ulong)n, st.TokensDecoded);
                Assert.AreEqual((ulong)_prompt.Length, st.TokensPrefilled);
            }

            using (var s = NewSession())
            {
                s.Prefill(_prompt);
                var pieces = new List<string>();
                foreach (string piece in s.GenerateText(n))  // IEnumerable<string>, lazily
                    pieces.Add(piece);
                Assert.Greater(pieces.Count, 10);
                string text = string.Concat(pieces);
                var expected = new List<byte>();
                foreach (int t in cTokens)
                    expected.AddRange(_model.TokenToPiece(t));
                Assert.AreEqual(Encoding.UTF8.GetString(expected.ToArray()), text);
                StringAssert.StartsWith(", there was a little girl named Lily.", text);
                StringAssert.StartsWith(text, Encoding.UTF8.GetString(Data.RefTextBytes()));
            }
        }

        /// <summary>Keeps the model's handle referenced while raw Native calls use a session.</summary>
        sealed class ModelLeaseForTest : IDisposable
        {
            readonly SafeHandle _h;
            public ModelLeaseForTest(Model m)
            {
                bool added = false;
                _h = m.Handle;
                _h.DangerousAddRef(ref added);
            }
            public void Dispose() { _h.DangerousRelease(); }
        }

        [Test]
        public void ABadPathThrowsWithStatusAndMessage()
        {
            string missing = Path.Combine(Path.GetTempPath(), "kvulkan-csharp-missing.gguf");
            var e = Assert.Throws<KvException>(() => _rt.LoadModel(missing));
            Assert.AreEqual(KvStatus.IO, e.Status);
            StringAssert.Contains("kvulkan-csharp-missing.gguf", e.NativeMessage);
            StringAssert.StartsWith("KV_ERR_IO: ", e.Message);
            StringAssert.Contains(e.NativeMessage, e.Message);
            Assert.AreEqual(e.NativeMessage, Library.LastErrorMessage);  // same thread, no call since

            var bad = Assert.Throws<KvException>(() => Model.FromBytes(_rt, Encoding.ASCII.GetBytes("GGUF but not really a model")));
            Assert.AreEqual(KvStatus.BadModel, bad.Status);
            Assert.IsNotEmpty(bad.NativeMessage);
        }

        [Test]
        public void BadInputLeavesTheSessionUsable()
        {
            using (var s = NewSession(32))
            {
                int t;
                var e = Assert.Throws<KvException>(() => s.DecodeStep(out t));  // before any prefill
                Assert.AreEqual(KvStatus.BadState, e.Status);
                Assert.AreEqual(KvStatus.BadState, Assert.Throws<KvException>(() => s.Logits()).Status);
                e = Assert.Throws<KvException>(() => s.Prefill(new[] { 1, 100000 }));
                Assert.AreEqual(KvStatus.BadToken, e.Status);
                StringAssert.Contains("100000", e.NativeMessage);
                Assert.AreEqual(0, s.NTokens);
                e = Assert.Throws<KvException>(() => s.Prefill(new int[40]));  // 40 > n_ctx 32
                Assert.AreEqual(KvStatus.ContextFull, e.Status);
                Assert.AreEqual(0, s.NTokens);
                s.Prefill(_prompt);
                Assert.AreEqual(_greedy.Take(4).ToArray(), s.Generate(4).ToArray());
                Assert.AreEqual(KvStatus.InvalidArgument, Assert.Throws<KvException>(() => s.Truncate(100)).Status);
                var full = Assert.Throws<KvException>(() => s.Generate(100).ToArray());
                Assert.AreEqual(KvStatus.ContextFull, full.Status);
                Assert.AreEqual(32, s.NTokens);  // every token up to the limit stayed
            }
        }

        [Test]
        public void ForkTruncateSaveAndLoad()
        {
            string file = Path.Combine(Path.GetTempPath(), "kvulkan-csharp-" + Guid.NewGuid().ToString("N") + ".kvs");
            try
            {
                using (var s = NewSession(128, CacheType.F16))
                {
                    s.Prefill(_prompt);
                    Assert.AreEqual(_greedy.Take(8).ToArray(), s.Generate(8).ToArray());
                    using (Session child = s.Fork())
                    {
                        Assert.AreEqual(s.NTokens, child.NTokens);
                        Assert.AreEqual(s.Logits(), child.Logits());
                        Assert.Greater(child.Stats().SharedPages, 0u);
                        // The child goes on alone; the parent is unaffected and gives the same tokens.
                        Assert.AreEqual(_greedy.Skip(8).Take(8).ToArray(), child.Generate(8).ToArray());
                        Assert.AreEqual(5 + 8, s.NTokens);
                        Assert.AreEqual(_greedy.Skip(8).Take(8).ToArray(), s.Generate(8).ToArray());
                    }

                    // Back to the prompt and 4 generated tokens: decoding continues from there.
                    s.Truncate(5 + 4);
                    Assert.AreEqual(9, s.NTokens);
                    Assert.AreEqual(_greedy.Skip(4).Take(6).ToArray(), s.Generate(6).ToArray());

                    byte[] image = s.Save();
                    Assert.Greater(image.Length, 1000);
                    s.SaveFile(file);
                    float[] logits = s.Logits();
                    int[] next = _greedy.Skip(10).Take(8).ToArray();
                    using (Session restored = _model.LoadSession(image))
                    using (Session fromFile = _model.LoadSessionFile(file))
                    {
                        Assert.AreEqual(s.NTokens, restored.NTokens);
                        Assert.AreEqual(logits, restored.Logits());  // bit for bit
                        Assert.AreEqual(logits, fromFile.Logits());
                        Assert.AreEqual(next, restored.Generate(8).ToArray());
                        Assert.AreEqual(next, fromFile.Generate(8).ToArray());
                    }
                    Assert.AreEqual(next, s.Generate(8).ToArray());

                    image[image.Length / 2] ^= 0x5a;  // the checksum catches it
                    var e = Assert.Throws<KvException>(() => _model.LoadSession(image));
                    Assert.AreEqual(KvStatus.BadModel, e.Status);
                    Assert.IsNotEmpty(e.NativeMessage);
                    e = Assert.Throws<KvException>(() => _model.LoadSession(new byte[16]));
                    Assert.AreEqual(KvStatus.BadModel, e.Status);
                }
            }
            finally
            {
                File.Delete(file);
            }
        }

        [Test]
        public void EvalGivesTheLogitsOfEveryToken()
        {
            using (var a = NewSession(32, CacheType.F16))
            using (var b = NewSession(32, CacheType.F16))
            {
                float[] rows = a.Eval(_prompt);
                Assert.AreEqual(_prompt.Length * 512, rows.Length);
                b.Prefill(_prompt);
                float[] last = b.Logits();
                var lastRow = rows.Skip((_prompt.Length - 1) * 512).ToArray();
                Assert.AreEqual(last.Length, lastRow.Length);
                double num = 0, den = 0;
                for (int i = 0; i < last.Length; i++)
                {
                    num += (last[i] - lastRow[i]) * (double)(last[i] - lastRow[i]);
                    den += last[i] * (double)last[i];
                }
                Assert.Less(Math.Sqrt(num / den), 1e-5, "eval's last row vs prefill's logits");
                Assert.AreEqual(_greedy[0], Array.IndexOf(lastRow, lastRow.Max()));
                Assert.IsNull(a.Eval(new[] { _greedy[0] }, wantLogits: false));
                Assert.AreEqual(_prompt.Length + 1, a.NTokens);
            }
        }

        [Test]
        public void DecodeBatchAndSpeculativeGiveTheGreedyTokens()
        {
            var sessions = new[] { NewSession(64), NewSession(64), NewSession(64) };
            try
            {
                foreach (var s in sessions)
                    s.Prefill(_prompt);
                sessions[1].Generate(2).ToArray();  // one session ahead of the others
                var tokens = new int[3];
                var statuses = new KvStatus[3];
                for (int step = 0; step < 4; step++)
                {
                    Session.DecodeBatch(sessions, tokens, statuses);
                    Assert.AreEqual(new[] { KvStatus.Ok, KvStatus.Ok, KvStatus.Ok }, statuses);
                    Assert.AreEqual(new[] { _greedy[step], _greedy[step + 2], _greedy[step] }, tokens);
                }

                // kv_batch_eval: a decode item beside a prompt fed with its logits, one pass.
                using (var fresh = NewSession(64))
                {
                    var items = new[]
                    {
                        new BatchItem { Session = sessions[0] },
                        new BatchItem { Session = fresh, Tokens = _prompt, WantLogits = true },
                    };
                    Session.BatchEval(items);
                    Assert.AreEqual(KvStatus.Ok, items[0].Status);
                    Assert.AreEqual(_greedy[4], items[0].Token);
                    Assert.AreEqual(KvStatus.Ok, items[1].Status);
                    Assert.AreEqual(_prompt.Length, items[1].NDone);
                    Assert.AreEqual(_prompt.Length * 512, items[1].Logits.Length);
                    var last = items[1].Logits.Skip((_prompt.Length - 1) * 512).ToArray();
                    Assert.AreEqual(_greedy[0], Array.IndexOf(last, last.Max()));
                    Assert.AreEqual(last, fresh.Logits());
                    int t;
                    Assert.IsTrue(fresh.DecodeStep(out t));
                    Assert.AreEqual(_greedy[0], t);
                }

                var spec = new List<int>();
                int passes = 0;
                using (var s = NewSession(128))
                {
                    s.Prefill(_prompt);
                    while (spec.Count < 24)
                    {
                        bool eog;
                        int drafted;
                        int[] got = s.DecodeSpeculative(null, 4, out eog, out drafted);
                        Assert.IsFalse(eog);
                        Assert.GreaterOrEqual(got.Length, 1);
                        spec.AddRange(got);
                        passes++;
                    }
                }
                Assert.AreEqual(_greedy.Take(spec.Count).ToArray(), spec.ToArray());
                Console.WriteLine("speculative: " + spec.Count + " tokens in " + passes + " steps");
            }
            finally
            {
                foreach (var s in sessions)
                    s.Dispose();
            }
        }

        [Test]
        public void DisposeInAnyOrder()
        {
            // A model disposed before its session: the session keeps working, the model object
            // refuses further use, and the native model goes when the session does.
            Model m = _rt.LoadModel(Data.Stories, new ModelOptions { KvPageSize = 8 });
            Session s = m.CreateSession(new SessionOptions { NCtx = 32 });
            m.Dispose();
            Assert.IsTrue(m.IsDisposed);
            Assert.Throws<ObjectDisposedException>(() => m.Info());
            Assert.Throws<ObjectDisposedException>(() => m.CreateSession());
            s.Prefill(_prompt);
            Assert.AreEqual(_greedy.Take(3).ToArray(), s.Generate(3).ToArray());
            Assert.AreEqual(_model.Detokenize(_greedy.Skip(3).Take(4).ToArray()).TrimStart(' '),
                            string.Concat(s.GenerateText(4)).TrimStart(' '));
            Assert.Throws<ObjectDisposedException>(() => s.Fork());  // creates a session: needs the model
            s.Dispose();
            s.Dispose();  // idempotent
            Assert.Throws<ObjectDisposedException>(() => s.Prefill(_prompt));
            int t;
            Assert.Throws<ObjectDisposedException>(() => s.DecodeStep(out t));

            // A runtime disposed before its model: destroyed natively only after the model (the
            // validation layer reports a VkDevice destroyed with live buffers, and the log
            // callback, freed with the runtime, is still called during the model's release).
            var logs = new List<string>();
            var rt2 = new Runtime(new RuntimeOptions { Validation = _validated, Log = (l, msg) => { lock (logs) logs.Add(l + ": " + msg); } });
            Model m2 = rt2.LoadModel(Data.Stories);
            rt2.Dispose();
            Assert.Throws<ObjectDisposedException>(() => rt2.GetInfo());
            Assert.Throws<ObjectDisposedException>(() => rt2.LoadModel(Data.Stories));
            Assert.AreEqual(_prompt, m2.Tokenize("Once upon a time"));
            Assert.IsTrue(m2.Info().OnDevice);
            m2.Dispose();
            lock (logs)
                Assert.IsFalse(logs.Any(x => x.StartsWith("Validation") || x.StartsWith("Error")), string.Join(" | ", logs));

            // Tokenizer only, without a runtime; sessions are refused with a status.
            using (var vocab = new Model(null, Data.Stories, new ModelOptions { VocabOnly = true }))
            {
                Assert.AreEqual(_prompt, vocab.Tokenize("Once upon a time"));
                var e = Assert.Throws<KvException>(() => vocab.CreateSession());
                Assert.AreEqual(KvStatus.BadState, e.Status);
            }
        }

        [Test]
        public void SamplerAndCacheStats()
        {
            using (var a = _model.CreateSession(new SessionOptions { NCtx = 64, Sampler = new Sampler { Temperature = 0.8f, TopK = 40, Seed = 7 } }))
            using (var b = _model.CreateSession(new SessionOptions { NCtx = 64, Sampler = new Sampler { Temperature = 0.8f, TopK = 40, Seed = 7 } }))
            {
                a.Prefill(_prompt);
                b.Prefill(_prompt);
                int[] ta = a.Generate(16).ToArray();
                Assert.AreEqual(ta, b.Generate(16).ToArray(), "same seed, same tokens");
                a.Reset();
                a.SetSampler(null);  // greedy again
                a.Prefill(_prompt);
                Assert.AreEqual(_greedy.Take(8).ToArray(), a.Generate(8).ToArray());
            }
            CacheStats cs = _model.GetCacheStats(CacheType.F16);
            Assert.Greater(cs.PagesTotal, 0u);
            Assert.Greater(cs.PageBytes, 0ul);
            Assert.AreEqual(cs.PagesTotal, cs.PagesInUse + cs.PagesCached + cs.PagesFree);
        }

        // ---- since 0.2.0: offload, kv_generate, chat templates, grammars, logit bias, embeddings -----

        /// <summary>The concatenated kv_token_to_piece bytes of tokens, as kv_generate passes them on.</summary>
        string Pieces(IEnumerable<int> tokens)
        {
            var b = new MemoryStream();
            foreach (int t in tokens)
            {
                byte[] p = _model.TokenToPiece(t);
                b.Write(p, 0, p.Length);
            }
            return Encoding.UTF8.GetString(b.ToArray());
        }

        [Test]
        public void AnOffloadedSessionContinuesWithTheSameTokens()
        {
            using (var s = NewSession())
            {
                s.Prefill(_prompt);
                Assert.AreEqual(_greedy.Take(4).ToArray(), s.Generate(4).ToArray());
                s.Offload();
                SessionStats off = s.Stats();
                Assert.IsTrue(off.Offloaded);
                Assert.AreEqual(0u, off.Pages);
                Assert.Greater(off.PagesOffloaded, 0ul);
                CacheStats pool = _model.GetCacheStats(CacheType.F16);
                Assert.GreaterOrEqual(pool.PagesOffloaded, off.PagesOffloaded);
                Assert.Greater(pool.OffloadedBytes, 0ul);
                Assert.AreEqual(_greedy.Skip(4).Take(8).ToArray(), s.Generate(8).ToArray());
                SessionStats back = s.Stats();
                Assert.IsFalse(back.Offloaded);
                Assert.AreEqual(off.PagesOffloaded, back.PagesRestored);
            }
        }

        [Test]
        public void GenerateUntilStreamsPiecesAndStopsAtAStopString()
        {
            string all = Pieces(_greedy.Take(24));
            using (var s = NewSession())
            {
                s.Prefill(_prompt);
                var pieces = new List<byte[]>();
                GenerateResult r = s.GenerateUntil(24, null, p => { pieces.Add(p); return true; });
                Assert.AreEqual(GenerateStop.MaxTokens, r.StopReason);
                Assert.AreEqual(24, r.NTokens);
                Assert.AreEqual(_greedy[23], r.LastToken);
                Assert.AreEqual(all, r.Text);
                Assert.Greater(pieces.Count, 1);
                Assert.AreEqual(all, Encoding.UTF8.GetString(pieces.SelectMany(p => p).ToArray()));

                string stop = all.Substring(30, 6);
                s.Truncate(_prompt.Length);
                GenerateResult cut = s.GenerateUntil(24, new[] { "never in this story", stop });
                Assert.AreEqual(GenerateStop.StopString, cut.StopReason);
                Assert.AreEqual(1, cut.StopString);
                Assert.AreEqual(all.Substring(0, all.IndexOf(stop, StringComparison.Ordinal)), cut.Text);

                s.Truncate(_prompt.Length);
                GenerateResult two = s.GenerateUntil(24, null, p => false);  // the callback stops it
                Assert.AreEqual(GenerateStop.Callback, two.StopReason);
                var e = Assert.Throws<KvException>(() => s.GenerateUntil(4, new[] { "" }));
                Assert.AreEqual(KvStatus.InvalidArgument, e.Status);
                Assert.Throws<InvalidOperationException>(() => s.GenerateUntil(4, null, p => { throw new InvalidOperationException(); }));
            }
        }

        [Test]
        public void ChatFormatWithAnExplicitTemplate()
        {
            string tmpl = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>\n{% endfor %}"
                        + "{% if add_generation_prompt %}<assistant>{% endif %}";
            var msgs = new[] { new ChatMessage("system", " Be brief. "), new ChatMessage("user", "Café? 😀") };
            string want = "<system>Be brief.</system>\n<user>Café? 😀</user>\n";
            Assert.AreEqual(want + "<assistant>", _model.ChatFormat(tmpl, msgs, ChatFlags.AddAssistantPrompt));
            Assert.AreEqual(want, Library.ChatFormat(tmpl, msgs));
            string big = new string('x', 5000);  // past the first buffer: the Incomplete retry
            Assert.AreEqual("<user>" + big + "</user>\n", Library.ChatFormat(tmpl, new[] { new ChatMessage("user", big) }));
            Assert.AreEqual(KvStatus.InvalidArgument, Assert.Throws<KvException>(() => Library.ChatFormat("{% for %}", msgs)).Status);
            Assert.AreEqual("", _model.ChatTemplate);  // stories260K has none
            Assert.AreEqual(KvStatus.Unsupported, Assert.Throws<KvException>(() => _model.ChatFormat(msgs)).Status);
        }

        [Test]
        public void GrammarsLogitBiasAndBannedTokensSteerTheOutput()
        {
            using (var s = NewSession())
            {
                s.Prefill(_prompt);
                s.SetGrammar("root ::= [a-e]+");
                string text = s.GenerateUntil(6).Text;
                StringAssert.IsMatch("^[a-e]+$", text);
                StringAssert.DoesNotMatch("^[a-e]+$", Pieces(_greedy.Take(6)));

                string gbnf = Library.JsonSchemaToGrammar("{\"type\": \"boolean\"}");
                StringAssert.Contains("root ::=", gbnf);
                s.Truncate(_prompt.Length);
                s.SetGrammar(gbnf);
                GenerateResult r = s.GenerateUntil(40);
                Assert.AreEqual(GenerateStop.EndOfGeneration, r.StopReason, r.Text);
                Assert.That(r.Text.Trim(), Is.EqualTo("true").Or.EqualTo("false"));
                Assert.AreEqual(KvStatus.InvalidArgument,
                                Assert.Throws<KvException>(() => s.SetGrammar("root ::= undefined_rule")).Status);
                s.SetGrammar(null);
                s.Truncate(_prompt.Length);
                Assert.AreEqual(_greedy.Take(3).ToArray(), s.Generate(3).ToArray());

                s.Truncate(_prompt.Length);
                s.SetSampler(new Sampler { BannedTokens = new[] { _greedy[0] } });
                int t;
                Assert.IsTrue(s.DecodeStep(out t));
                Assert.AreNotEqual(_greedy[0], t);
                s.Truncate(_prompt.Length);
                s.SetSampler(new Sampler { LogitBias = new Dictionary<int, float> { { 77, 1000.0f } } });
                Assert.IsTrue(s.DecodeStep(out t));
                Assert.AreEqual(77, t);
            }
        }

        [Test]
        public void EmbeddingsAreNEmbdFloatsAndUseQueueCallsBack()
        {
            uint nEmbd = _model.Info().NEmbd;
            using (var s = NewSession(64))
            {
                float[] e = s.Embeddings(_prompt, EmbedFlags.Mean | EmbedFlags.Normalize);
                Assert.AreEqual((int)nEmbd, e.Length);
                Assert.AreEqual(1.0, Math.Sqrt(e.Sum(v => (double)v * v)), 1e-3);
                Assert.AreEqual(e, s.Embeddings(_prompt, EmbedFlags.Mean | EmbedFlags.Normalize));
                Assert.AreNotEqual(e, s.Embeddings(_prompt, EmbedFlags.Normalize));
                Assert.AreEqual(0, s.NTokens);
            }
            IntPtr seen = IntPtr.Zero;
            _rt.UseQueue(q => seen = q);
            Assert.AreNotEqual(IntPtr.Zero, seen);
            Assert.Throws<InvalidOperationException>(() => _rt.UseQueue(q => { throw new InvalidOperationException(); }));
        }
    }
}
