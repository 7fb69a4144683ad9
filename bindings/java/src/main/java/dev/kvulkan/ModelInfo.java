package dev.kvulkan;

/** kv_model_info (written by the library). */
public final class ModelInfo {
    /** 1 when the weights were uploaded (loaded with a runtime). */
    public int onDevice;
    public String architecture = "";
    public String name = "";
    public String weightTypes = "";
    public long nParams;
    public long weightBytes;
    public long fileSize;
    public long deviceBytes;
    public int nVocab;
    public int nEmbd;
    public int nLayer;
    public int nHead;
    public int nHeadKv;
    public int headDim;
    public int nFf;
    public int nCtxTrain;
    public int ropeNeox;
    public float ropeFreqBase;
    public int tiedOutput;

    @Override
    public String toString() {
        return "ModelInfo{" + architecture + " '" + name + "', " + nParams + " params, n_vocab " + nVocab + "}";
    }
}
